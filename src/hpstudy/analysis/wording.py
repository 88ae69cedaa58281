"""A verdict's evidence in words: the effect and its interval first, then the test that ran
and its p-values, the relevance, failures and the seeds that would decide it; and the worked
example the report prints under the rule."""

from __future__ import annotations

import math
from typing import Any

from hpstudy.analysis.rule import ALPHA
from hpstudy.formatting import fmt_text, p_is


def _f(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def ci_name(alpha: float = ALPHA) -> str:
    """The name of a 1 - alpha interval with the digits alpha needs: '95% CI' at 0.05,
    '98.4% CI' at a sequential look's nominal level 0.016, '99.995% CI' at 5e-5."""
    pct = 100 * alpha
    decimals = max(0, 1 - math.floor(math.log10(pct))) if pct > 0 else 0
    text = f"{100 - pct:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "% CI"


def interval(lo: float, hi: float, alpha: float, family: int = 1) -> str:
    """'95% CI 0.1 to 0.3', or for a pair picked from a family of m: '95% CI simultaneous
    over m pairs (Bonferroni) ...'."""
    name = ci_name(alpha)
    if family > 1:
        name += f" simultaneous over {family} (Bonferroni)"
    return f"{name} {fmt_text(lo)} to {fmt_text(hi)}"


def evidence(row: dict[str, Any], metric: str, what: str, alpha: float = ALPHA) -> str:
    """'bs16 − bs32 = −0.05 test_r2 (95% CI −0.08 to −0.02), one-sample t on per-seed
    differences (3 seeds), Holm-adjusted p = 0.01'; the interval is named by its level,
    1 - alpha (a sequential look's: '98.4% CI')."""
    est = row.get("estimate", math.nan)
    if not math.isfinite(_f(est)):
        return row.get("evidence", "") or ""
    text = f"{what} = {est:+.3g} {metric}"
    if math.isfinite(_f(row.get("ci_low"))):
        text += f" ({interval(row['ci_low'], row['ci_high'], alpha, row.get('_family', 1))})"
    if row.get("method"):
        text += f", {row['method']}"
    if math.isfinite(_f(row.get("p_adj"))):
        claim = " of |effect| > ±sesoi" if row.get("expect") in ("equal", "none") else ""
        text += f", Holm-adjusted {p_is(row['p_adj'])}{claim}"
    if math.isfinite(_f(row.get("tost_p"))):
        text += f", TOST {p_is(row['tost_p'])} at ±{fmt_text(row['sesoi'])}"
    return text


def trend_details(q, metric: str, alpha: float) -> list[str]:
    """The change over the studied range, the lack-of-fit test and the level means."""
    out = []
    span = q.extra.get("span")
    if span:
        lo, hi = q.test.ci(2 * alpha)
        out.append(
            f"change over the studied range {q.test.estimate * span:+.3g} {metric} "
            f"({ci_name(2 * alpha)} {fmt_text(lo * span)} to {fmt_text(hi * span)})"
        )
    if q.extra.get("lof_method"):
        out.append(
            f"lack of fit (the levels' deviations from the line): {q.extra['lof_method']}, "
            f"Holm-adjusted {p_is(q.extra.get('p_lof_adj', math.nan))}"
        )
    if math.isfinite(_f(q.tost_p)):
        out.append(f"every pair of levels within ±sesoi: TOST {p_is(q.tost_p)}")
    return out


def simple_effects(q) -> str:
    """'simple effects of a: at b=x +0.03 (95% CI simultaneous over 2 ...), at b=y ...'."""
    rows = q.extra.get("simple") or []
    if not rows:
        return ""
    parts = [
        f"at {r['at']} {r['estimate']:+.3g} ({fmt_text(r['ci_low'])} to {fmt_text(r['ci_high'])})"
        for r in rows
        if math.isfinite(_f(r["estimate"]))
    ]
    factor = q.extra["factors"][0]
    return (
        f"simple effects of {factor} (intervals simultaneous over {len(rows)}, Bonferroni): "
        + ", ".join(parts)
    )


def failures(f: dict[str, Any], a: str, b: str) -> str:
    if not f or not (f.get("failed_a") or f.get("failed_b")):
        return ""
    text = (
        f"among finished seeds only: {a} failed {f['failed_a']} of {f['ran_a']} seeds, "
        f"{b} failed {f['failed_b']} of {f['ran_b']}"
    )
    if math.isfinite(_f(f.get("fisher_p"))):
        text += f" (Fisher's exact test of the failure rates {p_is(f['fisher_p'])})"
    return text


def worked_example(rows: list[dict[str, Any]]) -> str:
    """The rule applied to one row of this study, in words; its interval named by the row's
    `level` where it has one (a sequential look's), else by ALPHA."""
    pick = next(
        (
            r
            for r in rows
            if r["verdict"] in ("supported", "contradicted") and math.isfinite(_f(r["ci_low"]))
        ),
        None,
    ) or next((r for r in rows if math.isfinite(_f(r["ci_low"]))), None)
    if pick is None:
        return ""
    expect = pick["expect"] or "nothing (two-sided)"
    relevance = pick.get("relevance")
    return (
        f"`{pick['group']}` / `{pick['contrast']}` predicts {expect}; the estimate is "
        f"{fmt_text(pick['estimate'])} ({ci_name(_level(pick))} {fmt_text(pick['ci_low'])} to "
        f"{fmt_text(pick['ci_high'])}), Holm-adjusted {p_is(pick['p_adj'])}"
        + (
            f", TOST {p_is(pick['tost_p'])} at ±{fmt_text(pick['sesoi'])}"
            if math.isfinite(_f(pick.get("tost_p")))
            else ""
        )
        + f", so the verdict is **{pick['verdict']}**"
        + (f" ({relevance})" if isinstance(relevance, str) and relevance else "")
        + "."
    )


def _level(row: dict[str, Any]) -> float:
    level = _f(row.get("level", ALPHA))
    return level if math.isfinite(level) and 0 < level < 1 else ALPHA


CLAIMS = ("supported", "contradicted", "differs", "depends")
RELEVANCE_WORDS = {
    "relevant": " (relevant)",
    "negligible": " (negligible: inside ±sesoi)",
    "unclear": " (size unclear)",
}


def verdict_words(row: dict[str, Any]) -> str:
    """The verdict cell of a report table: '**differs**, not monotone; best at bs32',
    '**depends** on lr', '**supported** (negligible: inside ±sesoi)'."""
    verdict = row.get("verdict") or ""
    qualifier = row.get("qualifier") or ""
    text = f"**{verdict}**"
    if isinstance(qualifier, str) and qualifier:
        text += (" " if verdict == "depends" else ", ") + qualifier
    relevance = row.get("relevance")
    if verdict in CLAIMS and isinstance(relevance, str):
        text += RELEVANCE_WORDS.get(relevance, "")
    return text
