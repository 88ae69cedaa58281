"""A study's questions answered: each group's design recognised, its questions tested, the
Holm families adjusted, the verdict rule applied, and the rows of verdicts.csv written in
words (evidence, relevance, failures, seeds needed); then the recommendation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

import hpstudy.analysis.levels as lv
import hpstudy.analysis.questions as qs
import hpstudy.analysis.rule as rule
import hpstudy.analysis.variance as variance
import hpstudy.analysis.wording as ev
from hpstudy.analysis.design import Design, Runs, higher_is_better, recognise, run_table
from hpstudy.analysis.power import level_used, seeds_needed
from hpstudy.analysis.recommend import identical_configs, recommend
from hpstudy.formatting import fmt_text

VERDICT_COLUMNS = [
    "group",
    "contrast",
    "question",
    "expect",
    "verdict",
    "qualifier",
    "relevance",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_adj",
    "tost_p",
    "sesoi",
    "margin",
    "method",
    "paired",
    "n_a",
    "n_b",
    "failed_a",
    "failed_b",
    "fisher_p",
    "effect_sd",
    "alpha_used",
    "seeds_needed",
    "evidence",
    "warnings",
]


def group_questions(d: Design, sesoi: float | None, alpha: float) -> list[qs.Question]:
    """The group row(s) of the design, then its planned contrasts."""
    question = d.spec.get("question") or ""
    if d.kind == "factorial":
        out = qs.factorial(d, sesoi, alpha, "none" if d.group_expect == "none" else "")
        for q in out:
            q.question = f"{question} [{q.contrast}]".strip()
    elif d.kind == "trend":
        q = qs.trend(d, sesoi, alpha)
        f = d.factors[0]
        q.question = question or f"does the metric {d.expect['trend'][:-3]}e with {f}?"
        out = [q]
    else:
        q = qs.levels(d, sesoi, alpha, d.group_expect)
        q.question = question
        if d.spec.get("kind") == "list":
            n = len(d.labels)
            q.question = (
                f"do these {n} configurations differ? (their levels change "
                f"{', '.join(d.factors) or 'several settings'} together"
                + (
                    f", so this row cannot answer '{question}'; "
                    + (
                        "the contrasts below do)"
                        if d.spec.get("contrasts")
                        else "declare `contrasts` for that)"
                    )
                    if question
                    else ")"
                )
            )
        out = [q]
    return out + [qs.contrast(d, c, sesoi, alpha) for c in d.spec.get("contrasts") or []]


def decide_all(d: Design, questions: list[qs.Question], alpha: float) -> None:
    qs.adjust(questions, alpha)
    for q in questions:
        if d.kind == "trend" and q.family == "group":
            q.verdict, q.qualifier = rule.trend_verdict(q, alpha)
            continue
        sign = d.sign if q.expect in ("a_better", "b_better") else 1
        q.verdict = rule.decide(
            q.expect,
            q.test.estimate,
            q.p_adj,
            q.tost_p,
            q.margin,
            sign,
            q.testable,
            q.identical,
            alpha,
        )
        if q.verdict == "inconclusive" and q.expect in qs.NO_EFFECT and q.p < alpha:
            q.qualifier = "an effect is detected, but not shown to exceed ±sesoi"
    if d.kind == "factorial":
        mains = [q for q in questions if q.family == "main"]
        inters = [q for q in questions if q.family == "interaction"]
        rule.depends(mains, inters, qs.zero_test_adjusted(questions), alpha)


def better_side(d: Design, q: qs.Question, spec: dict | None) -> list[str]:
    """The experiments a claim calls better (a contrast's side), for the recommendation."""
    if spec is None or q.verdict not in ("supported", "contradicted", "differs"):
        return []
    side = "a" if d.sign * q.test.estimate > 0 else "b"
    labels = [spec[side]] if isinstance(spec[side], str) else list(spec[side])
    return [d.experiments[lb] for lb in labels]


def to_row(
    d: Design, q: qs.Question, metric, sesoi, alpha, alpha_final, spec, describe=True
) -> dict[str, Any]:
    """The verdicts.csv row of a decided question (`describe`: with the seeds an
    inconclusive one needs; the simulations skip the power solver)."""
    claims = q.verdict in ("supported", "contradicted", "differs", "depends")
    lo, hi = q.ci if q.testable and not q.identical else (math.nan, math.nan)
    if q.identical:
        lo = hi = 0.0
    if d.kind == "trend" and q.family == "group":
        rel_ci, rel_tost = q.test.ci(alpha), q.extra.get("slope_tost", math.nan)
    else:
        rel_ci, rel_tost = (lo, hi), q.tost_p
    relevance = {
        "no relevant effect": "negligible",
        "inconclusive": "unclear",
    }.get(q.verdict, rule.relevance(rel_ci, rel_tost, q.margin, alpha) if claims else "")
    f = q.failures
    row = {
        "group": d.name,
        "contrast": q.contrast,
        "question": q.question,
        "expect": q.expect,
        "verdict": q.verdict,
        "qualifier": q.qualifier,
        "relevance": relevance,
        "estimate": q.test.estimate if not q.identical else 0.0,
        "ci_low": lo,
        "ci_high": hi,
        "p": q.p,
        "p_adj": q.p_adj,
        "tost_p": q.tost_p,
        "sesoi": sesoi if sesoi else math.nan,
        "margin": q.margin if q.margin else math.nan,
        "method": q.method,
        "paired": bool(q.test.paired),
        "n_a": q.n_a,
        "n_b": q.n_b,
        "failed_a": f.get("failed_a", math.nan),
        "failed_b": f.get("failed_b", math.nan),
        "fisher_p": f.get("fisher_p", math.nan),
        "effect_sd": q.test.sd,
        "alpha_used": alpha * q.share,
        "seeds_needed": math.nan,
        "_family": q.power_family if q.ci_alpha < alpha else 1,
        "_better": better_side(d, q, spec),
    }
    if q.verdict == "inconclusive" and describe:
        level = level_used(alpha_final, q.share, q.power_family)
        row["seeds_needed"] = seeds_needed(q.test.sd, q.margin, level, q.test.paired)
        row["_level_used"] = level
        row["_sequential"] = alpha_final != alpha
    a = b = ""
    if spec is not None:
        a, b = (
            s if isinstance(s, str) else "mean(" + ", ".join(s) + ")"
            for s in (spec["a"], spec["b"])
        )
    row["evidence"] = _evidence(d, q, row, metric, alpha, a, b)
    failed = [d.labels[i] for i in range(len(d.labels)) if d.failed[d.labels[i]].any()]
    involved = set(d.labels) if spec is None else set(_labels(spec["a"]) + _labels(spec["b"]))
    if q.verdict not in ("inconclusive", "not testable") and set(failed) & involved:
        words = ["among finished seeds"]
        losers = [e for e in row["_better"] if d.failed[_label(d, e)].any()]
        if losers:
            words.append(
                f"{', '.join(_label(d, e) for e in losers)} failed on some seeds: not recommended"
            )
        row["qualifier"] = "; ".join([x for x in (row["qualifier"], *words) if x])
    return row


def _labels(side) -> list[str]:
    return [side] if isinstance(side, str) else list(side)


def _label(d: Design, experiment: str) -> str:
    return next(lb for lb, e in d.experiments.items() if e == experiment)


def _evidence(d, q, row, metric, alpha, a, b) -> str:
    if q.identical:
        return (
            f"every level gives exactly the same {metric} on every seed, and every level "
            "finished the same seeds"
        )
    if not q.testable:
        return "; ".join(q.notes) or "nothing to test"
    trend = d.kind == "trend" and q.family == "group"
    shown = {**row, "tost_p": math.nan} if trend else row  # a trend's TOST is over its pairs
    if trend:
        shown["method"] = q.test.method
    parts = [ev.evidence(shown, metric, q.what, alpha)]
    if q.test.se == 0:
        parts.append("the same effect on every seed (no seed variance), so it is exact")
    if trend:
        parts += ev.trend_details(q, metric, alpha)
    if q.extra.get("simple"):
        parts.append(ev.simple_effects(q))
    if q.extra.get("strongest"):
        parts.append(f"the pair that differs most clearly: {q.extra['strongest']}")
    parts += q.notes
    if q.failures:
        parts.append(ev.failures(q.failures, a, b))
    if q.verdict == "inconclusive" and math.isfinite(row["seeds_needed"]):
        where = (
            "Holm's share of the last look's level" if row["_sequential"] else "Holm's share of α"
        )
        unit = f" {q.what.removeprefix('slope ')}" if trend else ""  # per doubling of bs
        parts.append(
            f"~{int(row['seeds_needed'])} seeds per level would decide it (80% power for "
            f"±{fmt_text(q.margin)}{unit} at level {row['_level_used']:.3g}, {where})"
        )
    if not q.margin and q.verdict == "inconclusive":
        parts.append("no sesoi declared, so no equivalence claim is possible")
    return "; ".join(p for p in parts if p)


def analyse_group(
    name: str,
    spec: dict[str, Any],
    runs: pd.DataFrame,
    configs: dict[str, dict[str, Any]],
    metric: str,
    sesoi: float | None,
    alpha: float = rule.ALPHA,
    alpha_final: float | None = None,
    table: Runs | None = None,
    describe: bool = True,
) -> dict[str, Any]:
    """One group: its levels table, checks, verdict rows and (`describe`) its descriptive
    model. `runs`: its rows of summary.csv; `table`: the study's run_table, if built."""
    d = recognise(name, spec, table or run_table(runs, metric), configs, metric)
    experiments = spec["experiments"]
    labels = {e: configs[e]["label"] for e in experiments}
    levels = lv.level_table(runs, experiments, labels, metric, spec.get("baseline"))
    noise = lv.noise_check(d.values) if describe else {}
    warn = lv.adequacy(levels, metric, noise)
    questions = group_questions(d, sesoi, alpha)
    decide_all(d, questions, alpha)
    specs = {c["name"]: c for c in spec.get("contrasts") or []}
    rows = []
    for q in questions:
        row = to_row(
            d,
            q,
            metric,
            sesoi,
            alpha,
            alpha_final or alpha,
            specs.get(q.contrast) if q.family == "contrasts" else None,
            describe,
        )
        row["warnings"] = "; ".join(warn)
        rows.append(row)
    result: dict[str, Any] = {
        "levels": levels,
        "warnings": warn,
        "factors": d.factors,
        "kind": spec.get("kind", "grid"),
        "design": d.kind,
        "noise": noise,
        "rows": rows,
    }
    if describe:
        result["rank_check"] = lv.rank_check(runs, experiments, metric, d.sign)
        result.update(_describe(d, runs, metric, questions))
    return result


def _describe(d: Design, runs: pd.DataFrame, metric: str, questions) -> dict[str, Any]:
    """The descriptive model of the group (variance shares, the factorial ANOVA table)."""
    out: dict[str, Any] = {}
    head = questions[0]
    if d.kind == "factorial":
        ok = runs[runs["status"] == "ok"]
        long = ok.assign(y=pd.to_numeric(ok[metric], errors="coerce") if metric in ok else np.nan)
        long = long.dropna(subset=["y"])
        long = long.assign(level=long["experiment"].map({e: lb for lb, e in d.experiments.items()}))
        for f in d.factors:
            long[f] = long["level"].map(lambda lb, f=f: d.value_of(lb, f))
        out["anova"], out["variance"] = (
            variance.of_factorial(long, d.factors, d.orders) if len(long) > 2 else ([], None)
        )
    elif d.kind == "trend":
        f = d.factors[0]
        out["variance"] = variance.of_trend(d.values, d.x, f, d.expect.get("scale", "linear"))
        out["trend"] = {
            "p_lof": head.extra.get("p_lof"),
            "shape": head.extra.get("shape"),
            "method": head.method,
        }
    else:
        level = (
            d.factors[0]
            if d.spec.get("kind", "grid") == "grid" and len(d.factors) == 1
            else "configuration"
        )
        out["variance"] = variance.of_levels(d.values, level)
        out["omnibus"] = {
            "p": head.p,
            "method": head.method,
            **{k: v for k, v in head.extra.items()},
            "identical": head.identical,
        }
    return out


def analyse_study(
    summary: pd.DataFrame,
    doc: dict[str, Any],
    alpha: float = rule.ALPHA,
    alpha_final: float | None = None,
    describe: bool = True,
) -> dict[str, Any]:
    """All questions of a study. `summary`: one row per experiment x seed (experiment, group,
    seed, status, the metric); `doc`: study.json's groups, metric and sesoi plus the resolved
    settings of every experiment (`experiments`). `alpha`: the level the verdicts and
    intervals use (a sequential look's nominal level); `alpha_final`: the level the seeds
    needed are computed for (a sequential study's last look; default alpha); `describe`:
    the descriptive parts too (model fits, rank check, noise check, seeds needed); the
    simulations skip them, the verdicts do not depend on them."""
    metric = doc["metric"]
    sesoi = doc.get("sesoi")
    configs = {e["experiment"]: e for e in doc["experiments"]}
    groups, rows, levels = {}, [], []
    table = run_table(summary, metric)
    for name, spec in doc["groups"].items():
        runs = summary[summary["group"] == name] if "group" in summary else summary.iloc[:0]
        res = analyse_group(
            name, spec, runs, configs, metric, sesoi, alpha, alpha_final, table, describe
        )
        groups[name] = res
        rows += res["rows"]
        levels += [{"group": name, **x} for x in res["levels"]]
    recommended = recommend(levels, table, configs, metric, rows)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    for res in groups.values():
        res["rows"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in res["rows"]]
    return {
        "metric": metric,
        "alpha": alpha,
        "sesoi": sesoi,
        "rule": rule.RULE,
        "higher_is_better": higher_is_better(metric),
        "verdicts": pd.DataFrame(clean, columns=VERDICT_COLUMNS),
        "levels": levels,
        "groups": groups,
        "worked_example": ev.worked_example(clean),
        "identical_configs": identical_configs(configs),
        "recommended": recommended,
    }
