"""Seed-level statistical primitives (issue 3), kept for the tables and older callers.

The research questions are answered by hpstudy.analysis (issue 10): this module's
one-way ANOVA, Welch-vs-baseline and Spearman helpers are descriptive tools; they no longer
produce verdicts (the old rule ignored direction, seeds as blocks and equivalence).

Sign convention: `diff` is level minus baseline in the metric's own units; `d` and `g` are
signed so that a POSITIVE value means the level is BETTER than the baseline.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import stats as st

from hpstudy.metrics import LOWER_IS_BETTER  # the one owner of metric directions

ALPHA = 0.05
__all__ = ["LOWER_IS_BETTER"]


def finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, SD (ddof 1) and the t-based confidence interval of the mean (nan where
    undefined): the one formula behind every table and figure interval."""
    values = finite(values)
    n = len(values)
    if n == 0:
        return (math.nan,) * 4
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    sd = math.sqrt(variance(values))  # exactly 0 for identical seeds
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
    out: dict[str, Any] = {
        "n_per_level": {k: int(len(v)) for k, v in samples.items()},
        "anova_F": math.nan,
        "anova_p": math.nan,
        "kruskal_H": math.nan,
        "kruskal_p": math.nan,
        "testable": False,
        "note": "",
    }
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
    out = {
        "n": len(a),
        "n_baseline": len(b),
        "diff": float(a.mean() - b.mean()) if len(a) and len(b) else math.nan,
        "welch_t": math.nan,
        "welch_p": math.nan,
        "mwu_U": math.nan,
        "mwu_p": math.nan,
        "cohen_d": d,
        "hedges_g": g,
        "note": "",
    }
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
    return all(
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool | np.bool_)
        and v == v
        for v in values
    )


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


def identical_configs(configs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Experiments of different groups that resolve to the same config (e.g. a shared
    baseline); on CPU their seeds give identical numbers, so they are not independent."""
    by_hash: dict[str, list[str]] = {}
    for exp, cfg in configs.items():
        by_hash.setdefault(cfg.get("config_hash", exp), []).append(exp)
    return [exps for exps in by_hash.values() if len(exps) > 1]
