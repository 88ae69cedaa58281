"""Seed-aware statistics of a study: does each group's factor change the metric?

Per group (one level = one experiment, its samples = the finished seeds):
- omnibus tests across levels: one-way ANOVA (scipy.stats.f_oneway) and Kruskal-Wallis
  (scipy.stats.kruskal), with n per level;
- each level against the group's baseline: Welch's t-test (scipy.stats.ttest_ind,
  equal_var=False) and Mann-Whitney U, Holm-corrected within the group
  (statsmodels.stats.multitest.multipletests); effect sizes Cohen's d and Hedges' g;
- Spearman correlation of each numeric factor with the metric over single runs.

Sign convention: `diff` is level minus baseline in the metric's own units; `d` and `g` are
signed so that a POSITIVE value means the level is BETTER than the baseline (for metrics
where lower is better, e.g. MSE, the sign is flipped).

Verdict rule (VERDICT_RULE below is the text printed in the report):
- "not testable": fewer than two levels with >= 2 finished seeds, or no seed variance at all
  (seed-identical runs), so no test can separate factor from noise;
- "supported": the ANOVA p < ALPHA and, where the group has a baseline, at least one level
  differs from it with Holm-adjusted Welch p < ALPHA;
- "within seed noise": otherwise, when the largest gap between level means is smaller than
  the pooled seed SD (the factor moves the metric less than a reseed does);
- "not supported": otherwise (gaps exceed the seed SD but no test is significant).
Kruskal-Wallis and Mann-Whitney are shown as a rank-based check and never change a verdict
(with 3 seeds per level Mann-Whitney cannot reach p < 0.05).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from hpstudy.metrics import LOWER_IS_BETTER  # the one owner of metric directions

ALPHA = 0.05
VERDICT_RULE = (
    f"A factor's effect is **supported** when the one-way ANOVA across its levels has "
    f"p < {ALPHA} and (where the group has a baseline) at least one level differs from the "
    f"baseline with Holm-adjusted Welch p < {ALPHA}. Otherwise it is **within seed noise** "
    "when the largest gap between level means is smaller than the pooled seed SD, and "
    "**not supported** when the gaps are larger but not significant. It is **not testable** "
    "with fewer than two levels of at least two finished seeds, or when the seeds give no "
    "variance at all. Kruskal-Wallis and Mann-Whitney are shown as a rank-based check; they "
    "do not change a verdict."
)


def finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, SD and the t-based confidence interval of the mean (nan where undefined)."""
    values = finite(values)
    n = len(values)
    if n == 0:
        return (math.nan,) * 4
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    sd = float(values.std(ddof=1))
    half = float(st.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
    return mean, sd, mean - half, mean + half


def pooled_sd(samples: list[np.ndarray]) -> float:
    """Within-level SD pooled over levels with >= 2 values (nan if none)."""
    usable = [s for s in samples if len(s) >= 2]
    dof = sum(len(s) - 1 for s in usable)
    if dof == 0:
        return math.nan
    return math.sqrt(sum(variance(s) * (len(s) - 1) for s in usable) / dof)


def variance(values: np.ndarray) -> float:
    """Sample variance, exactly 0 for identical values (np.var can leave ~1e-33 there)."""
    return 0.0 if np.ptp(values) == 0 else float(values.var(ddof=1))


def effect_size(baseline, level, sign: int = 1) -> tuple[float, float]:
    """Cohen's d and Hedges' g of `level` vs `baseline` (pooled SD, ddof 1), times `sign`."""
    a, b = finite(level), finite(baseline)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    sp = pooled_sd([a, b])
    if not sp > 0:
        return math.nan, math.nan
    d = sign * (a.mean() - b.mean()) / sp
    correction = 1 - 3 / (4 * (len(a) + len(b)) - 9)  # Hedges (1981), small-sample bias
    return float(d), float(d * correction)


def omnibus(samples: dict[str, np.ndarray]) -> dict[str, Any]:
    """ANOVA and Kruskal-Wallis across the levels that have >= 2 finished seeds."""
    out: dict[str, Any] = {"n_per_level": {k: int(len(v)) for k, v in samples.items()},
                           "anova_F": math.nan, "anova_p": math.nan,
                           "kruskal_H": math.nan, "kruskal_p": math.nan,
                           "testable": False, "note": ""}
    usable = {k: v for k, v in samples.items() if len(v) >= 2}
    out["levels_tested"] = list(usable)
    if len(usable) < 2:
        out["note"] = "fewer than two levels with at least two finished seeds"
        return out
    values = list(usable.values())
    if not pooled_sd(values) > 0:
        out["note"] = "no seed variance in any level (seed-identical runs)"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        anova = st.f_oneway(*values)
        out["anova_F"], out["anova_p"] = float(anova.statistic), float(anova.pvalue)
        if len(np.unique(np.concatenate(values))) > 1:
            kw = st.kruskal(*values)
            out["kruskal_H"], out["kruskal_p"] = float(kw.statistic), float(kw.pvalue)
    out["testable"] = True
    return out


def compare(baseline, level, sign: int = 1) -> dict[str, Any]:
    """Welch t and Mann-Whitney U of one level against the baseline, with effect sizes."""
    a, b = finite(level), finite(baseline)
    d, g = effect_size(b, a, sign)
    out = {"n": len(a), "n_baseline": len(b),
           "diff": float(a.mean() - b.mean()) if len(a) and len(b) else math.nan,
           "welch_t": math.nan, "welch_p": math.nan, "mwu_U": math.nan, "mwu_p": math.nan,
           "cohen_d": d, "hedges_g": g, "note": ""}
    if len(a) < 2 or len(b) < 2:
        out["note"] = "fewer than two finished seeds"
        return out
    if variance(a) == 0 and variance(b) == 0:
        out["note"] = "no seed variance (seed-identical runs)"
        return out
    welch = st.ttest_ind(a, b, equal_var=False)
    out["welch_t"], out["welch_p"] = float(welch.statistic), float(welch.pvalue)
    mwu = st.mannwhitneyu(a, b, alternative="two-sided")
    out["mwu_U"], out["mwu_p"] = float(mwu.statistic), float(mwu.pvalue)
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values; nan entries stay nan and are not counted in the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return [float(x) for x in out]


def is_numeric(values) -> bool:
    return all(isinstance(v, int | float | np.integer | np.floating)
               and not isinstance(v, bool | np.bool_) and v == v for v in values)


def spearman(x, y) -> dict[str, Any]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {"rho": math.nan, "p": math.nan, "n": int(len(x)), "note": ""}
    if len(np.unique(x)) < 3:
        out["note"] = "fewer than three distinct factor values"
    elif len(np.unique(y)) < 2:
        out["note"] = "the metric does not vary"
    else:
        res = st.spearmanr(x, y)
        out["rho"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2g}" if abs(value) < 0.01 and value != 0 else f"{value:.3g}"


def verdict(result: dict[str, Any], metric: str, has_baseline: bool) -> tuple[str, str]:
    """(verdict, the numbers behind it in one line) from a group_statistics result."""
    omni, pairs = result["omnibus"], result["pairwise"]
    if not omni["testable"]:
        return "not testable", omni["note"]
    best_pair = min((p for p in pairs if math.isfinite(p["holm_p"])),
                    key=lambda p: p["holm_p"], default=None)
    significant = omni["anova_p"] < ALPHA and (
        not has_baseline or any(p["holm_p"] < ALPHA for p in pairs))
    gap, sd = result["max_gap"], result["pooled_sd"]
    evidence = (f"ANOVA p={_fmt(omni['anova_p'])}, Kruskal-Wallis p="
                f"{_fmt(omni['kruskal_p'])}; largest gap between level means {_fmt(gap)} vs "
                f"pooled seed SD {_fmt(sd)}")
    if best_pair is not None:
        evidence += (f"; strongest vs baseline: {best_pair['label']} diff "
                     f"{best_pair['diff']:+.3g}, g={_fmt(best_pair['hedges_g'])}, "
                     f"Holm p={_fmt(best_pair['holm_p'])}")
    for factor, sp in result.get("spearman", {}).items():
        if math.isfinite(sp["rho"]):
            evidence += f"; Spearman rho({factor})={sp['rho']:+.2f}, p={_fmt(sp['p'])}"
    if significant:
        return "supported", (f"{result['factor_text']} changes {metric} (best level "
                             f"{result['best_level']}); {evidence}")
    if gap < sd:
        return "within seed noise", evidence
    return "not supported", evidence


def group_statistics(runs: pd.DataFrame, experiments: list[str], labels: dict[str, str],
                     factors: list[str], baseline: str | None, metric: str,
                     factor_values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """All tests of one group. `runs`: the group's rows of summary.csv (any status);
    `factor_values[experiment][factor]`: the resolved value of each factor."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    ok = runs[runs["status"] == "ok"]
    samples = {labels[e]: finite(ok.loc[ok["experiment"] == e, metric]) for e in experiments}
    levels = []
    for e in experiments:
        mean, sd, lo, hi = mean_ci(samples[labels[e]])
        levels.append({"experiment": e, "label": labels[e], "n": len(samples[labels[e]]),
                       "mean": mean, "sd": sd, "ci_low": lo, "ci_high": hi,
                       "n_not_ok": int(((runs["experiment"] == e)
                                        & (runs["status"] != "ok")).sum())})
    means = [lv["mean"] for lv in levels if lv["n"] >= 1 and math.isfinite(lv["mean"])]
    ranked = sorted((lv for lv in levels if math.isfinite(lv["mean"])),
                    key=lambda lv: sign * lv["mean"], reverse=True)
    result: dict[str, Any] = {
        "metric": metric, "higher_is_better": sign > 0, "factors": factors,
        "factor_text": " × ".join(factors) if factors else "the setting",
        "baseline": labels.get(baseline) if baseline else None,
        "levels": levels, "omnibus": omnibus(samples),
        "pooled_sd": pooled_sd(list(samples.values())),
        "max_gap": float(max(means) - min(means)) if len(means) >= 2 else math.nan,
        "best_level": ranked[0]["label"] if ranked else None,
        "worst_level": ranked[-1]["label"] if ranked else None,
        "not_ok": runs.loc[runs["status"] != "ok", ["experiment", "seed", "status"]]
        .to_dict(orient="records"),
    }
    pairs = []
    if baseline is not None and baseline in labels:
        base_values = samples[labels[baseline]]
        for e in experiments:
            if e == baseline:
                continue
            pairs.append({"experiment": e, "label": labels[e],
                          **compare(base_values, samples[labels[e]], sign)})
        for pair, adjusted in zip(pairs, holm([p["welch_p"] for p in pairs]), strict=True):
            pair["holm_p"] = adjusted
    result["pairwise"] = pairs
    result["spearman"] = {}
    for factor in factors:
        values = [factor_values.get(e, {}).get(factor) for e in experiments]
        if len(values) and is_numeric(values):
            value_of = dict(zip(experiments, values, strict=True))
            result["spearman"][factor] = spearman(ok["experiment"].map(value_of), ok[metric])
    result["verdict"], result["evidence"] = verdict(result, metric, bool(pairs))
    result["verdict_text"] = f"{result['verdict']}: {result['evidence']}"
    return result


def shared_settings(chosen: list[dict[str, Any]], others: list[dict[str, Any]],
                    keys: list[str]) -> dict[str, Any]:
    """Settings every chosen experiment has in common and not every other one has."""
    shared = {}
    for key in keys:
        values = {repr(c.get(key)) for c in chosen}
        if len(values) == 1:
            value = chosen[0].get(key)
            if not others or any(repr(o.get(key)) != repr(value) for o in others):
                shared[key] = value
    return shared


def performers(level_rows: list[dict[str, Any]], configs: dict[str, dict[str, Any]],
               metric: str) -> dict[str, Any]:
    """Top and bottom experiments of the study by mean metric, and what each set shares.
    Configurations that appear in several groups (same config hash) count once."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    seen: dict[str, str] = {}
    aliases: dict[str, list[str]] = {}
    unique = []
    for row in sorted((r for r in level_rows if math.isfinite(r["mean"])),
                      key=lambda r: sign * r["mean"], reverse=True):
        key = configs.get(row["experiment"], {}).get("config_hash", row["experiment"])
        if key in seen:
            aliases.setdefault(seen[key], []).append(row["experiment"])
            continue
        seen[key] = row["experiment"]
        unique.append(row)
    k = max(1, min(5, round(len(unique) / 4)))
    if len(unique) < 2:
        return {"top": unique, "bottom": [], "top_share": {}, "bottom_share": {}, "k": k,
                "aliases": aliases}
    k = min(k, len(unique) // 2)
    top, bottom = unique[:k], unique[-k:]
    varying = [key for key in sorted({k for c in configs.values() for k in c})
               if key not in ("experiment", "group", "label", "config_hash", "overrides")
               and len({repr(c.get(key)) for c in configs.values()}) > 1]
    cfg = [configs.get(r["experiment"], {}) for r in top], \
        [configs.get(r["experiment"], {}) for r in bottom]
    return {"top": top, "bottom": bottom, "k": k, "aliases": aliases,
            "top_share": shared_settings(cfg[0], cfg[1], varying),
            "bottom_share": shared_settings(cfg[1], cfg[0], varying)}


def identical_configs(configs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Experiments of different groups that resolve to the same config (e.g. a shared
    baseline); on CPU their seeds give identical numbers, so they are not independent."""
    by_hash: dict[str, list[str]] = {}
    for exp, cfg in configs.items():
        by_hash.setdefault(cfg.get("config_hash", exp), []).append(exp)
    return [exps for exps in by_hash.values() if len(exps) > 1]


def study_statistics(summary: pd.DataFrame, doc: dict[str, Any]) -> dict[str, Any]:
    """Tests of every group of a study. `doc` is the study.json document (groups, metric,
    experiments table); `summary` is summary.csv (one row per run)."""
    metric = doc["metric"]
    configs = {e["experiment"]: e for e in doc["experiments"]}
    out: dict[str, Any] = {"metric": metric, "alpha": ALPHA, "rule": VERDICT_RULE,
                           "higher_is_better": metric not in LOWER_IS_BETTER, "groups": {}}
    all_levels = []
    for name, spec in doc["groups"].items():
        experiments = spec["experiments"]
        labels = {e: configs[e]["label"] for e in experiments}
        runs = summary[summary["group"] == name]
        if metric not in runs:
            runs = runs.assign(**{metric: math.nan})
        factor_values = {e: {f: configs[e].get(f) for f in spec["factors"]}
                         for e in experiments}
        result = group_statistics(runs, experiments, labels, spec["factors"],
                                  spec.get("baseline"), metric, factor_values)
        result["question"] = spec.get("question", "")
        out["groups"][name] = result
        all_levels += result["levels"]
    out["performers"] = performers(all_levels, configs, metric)
    out["identical_configs"] = identical_configs(configs)
    return out
