"""Analysis v2 (issue 10): answer each group's question with the design that was run.

Entry point: `analyse_study(summary, doc)` with summary.csv (one row per run) and the
study.json document (groups with kind/expect/contrasts, `sesoi`, `metric`, experiments).
It returns a dict with

- `verdicts`: one row per group question (contrast "(group)"), per factorial term
  ("main:a", "interaction:a:b") and per declared contrast (columns VERDICT_COLUMNS);
- `levels`: one row per experiment (n, failures, mean, SD, t-interval, optimizer steps,
  non-converged runs, Fisher's exact test of its failure rate vs the baseline);
- `groups`: per group the model tables (ANOVA terms), the rank check and adequacy warnings;
- `recommended`: the configuration to use (or why none can be recommended).

Everything is in the primary metric's own units. `estimate` is always "a minus b" (for a
contrast), "last minus first level" (two-level factorial main effect), the difference of
differences (two-level interaction), the slope per doubling or per unit (trend), or best
minus worst level (omnibus). "Better" follows the metric's direction (higher R2/accuracy,
lower MSE/MAE/loss). Seeds are a block: comparisons are paired by seed where seeds match
and models include C(seed).

The verdict rule is RULE below (printed in the report and in docs/report.md).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from hpstudy.metrics import LOWER_IS_BETTER  # the one owner of metric directions
from hpstudy.stats import mean_ci as t_interval  # tables and figures share one interval

ALPHA = 0.05
POWER = 0.8
BOUNDED_ABOVE_BY_1 = {
    "test_r2": (-math.inf, 1.0),
    "test_accuracy": (0.0, 1.0),
    "test_top5": (0.0, 1.0),
}
VERDICTS = (
    "supported",
    "contradicted",
    "differs",
    "no relevant effect",
    "inconclusive",
    "identical by construction",
    "not testable",
)
VERDICT_COLUMNS = [
    "group",
    "contrast",
    "question",
    "expect",
    "verdict",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_adj",
    "tost_p",
    "sesoi",
    "method",
    "paired",
    "n_a",
    "n_b",
    "seeds_needed",
    "evidence",
    "warnings",
]

RULE = (
    f"α = {ALPHA}. For each question (a group, a factorial term or a planned contrast): "
    "**not testable** when fewer than two finished seeds per side (or no residual degrees "
    "of freedom) leave nothing to test; **identical by construction** when every paired "
    "seed difference is exactly 0 (the settings cannot change the result); otherwise, with "
    "the effect's Holm-adjusted p-value (Holm within the family: a group's contrasts, its "
    "main effects, its interactions): a directional prediction (`a_better`, `b_better`, a "
    "`trend`) is **supported** when p_adj < α and the estimate goes the predicted way, "
    "**contradicted** when p_adj < α and it goes the other way; without a prediction the "
    "answer is **differs** when p_adj < α. **No relevant effect** when the 90% CI of the "
    "effect lies inside ± sesoi (TOST p < α; checked first for questions that predict no "
    "effect or predict nothing, so a tiny but significant effect is called irrelevant, "
    "and after the significance test for directional predictions); a question that "
    "predicts no effect (`equal`, `none`) and finds a significant effect outside ± sesoi "
    "is **contradicted**. Everything else is **inconclusive**, with the seeds per level "
    "that a power analysis (80% power, two-sided α, at the observed SD) says would detect "
    "a sesoi-sized effect. Without a declared `sesoi` no equivalence claim is made."
)


# -- small helpers ---------------------------------------------------------------------
def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def _f(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _fmt(value: float, digits: int = 3) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _fmt_p(value: float) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value: float) -> str:
    """'p = 0.012' or 'p < 0.001' for running text."""
    text = _fmt_p(value)
    return "p < 0.001" if text == "<0.001" else f"p = {text}"


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values; nan entries stay nan, outside the family. The step-down
    formula of statsmodels' `multipletests(method="holm")` (tests check they agree), written
    out because that function runs gc.collect() on every call, which made the simulation
    tests and large studies slow."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
        out[order] = adjusted
    return [float(x) for x in out]


def _ceil_seeds(n, effect_size: float) -> float:
    """The solver's n rounded up (at least 2); where it gives up (huge effects), the normal
    approximation."""
    n = float(np.atleast_1d(n)[0]) if n is not None else math.nan
    if not math.isfinite(n):
        z = st.norm.ppf(1 - ALPHA / 2) + st.norm.ppf(POWER)
        n = (z / effect_size) ** 2 + 1
    return float(max(2, math.ceil(n)))


def _solve_seeds(power_class: str, sd: float, sesoi: float | None) -> float:
    """Seeds for 80% power against a sesoi-sized difference at SD `sd`, from
    statsmodels.stats.power's `power_class` (TTestPower: paired, TTestIndPower: per level)."""
    if not sesoi or not (sd > 0):
        return math.nan
    from statsmodels.stats import power

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n = getattr(power, power_class)().solve_power(
                effect_size=sesoi / sd, alpha=ALPHA, power=POWER, alternative="two-sided"
            )
        except Exception:  # noqa: BLE001 - the solver gives up on extreme effect sizes
            return math.nan
    return _ceil_seeds(n, sesoi / sd)


def seeds_for_paired(sd_diff: float, sesoi: float | None) -> float:
    """Seeds a paired comparison needs to detect a sesoi-sized difference (80% power)."""
    return _solve_seeds("TTestPower", sd_diff, sesoi)


def seeds_for_welch(sd_pooled: float, sesoi: float | None) -> float:
    """Seeds per level an independent comparison needs for a sesoi-sized difference."""
    return _solve_seeds("TTestIndPower", sd_pooled, sesoi)


def seeds_for_linear(se_one_seed: float, sesoi: float | None) -> float:
    """Seeds for a model estimate whose standard error with one seed is `se_one_seed`
    (SE shrinks as 1/sqrt(seeds)); normal approximation."""
    if not sesoi or not (se_one_seed > 0):
        return math.nan
    z = st.norm.ppf(1 - ALPHA / 2) + st.norm.ppf(POWER)
    return float(max(2, math.ceil((z * se_one_seed / sesoi) ** 2)))


# -- the verdict rule -------------------------------------------------------------------
def decide(
    expect: str,
    estimate: float,
    p_adj: float,
    tost_p: float,
    sesoi: float | None,
    sign: int,
    testable: bool = True,
    identical: bool = False,
    alpha: float = ALPHA,
) -> str:
    """The verdict of one question. `expect`: "a_better", "b_better", "increasing",
    "decreasing", "equal", "none" or "" (two-sided). For a_better/b_better, `sign` is +1
    when higher is better; for trends it is +1 (the trend names the metric's direction).
    `alpha`: the level of this look (a sequential study's nominal level, issue 11)."""
    if not testable:
        return "not testable"
    if identical:
        return "identical by construction"
    significant = math.isfinite(p_adj) and p_adj < alpha
    equivalent = bool(sesoi) and math.isfinite(tost_p) and tost_p < alpha
    if expect in ("", "equal", "none"):
        if equivalent:
            return "no relevant effect"
        if significant:
            return "differs" if expect == "" else "contradicted"
        return "inconclusive"
    predicted = {"a_better": sign, "b_better": -sign, "increasing": 1, "decreasing": -1}[expect]
    if significant and math.isfinite(estimate) and estimate != 0:
        return "supported" if np.sign(estimate) == predicted else "contradicted"
    if equivalent:
        return "no relevant effect"
    return "inconclusive"


# -- two-sided comparisons --------------------------------------------------------------
def per_seed(values: pd.DataFrame, labels: list[str]) -> pd.Series:
    """The mean over `labels` per seed (a seed counts only where every label finished)."""
    wide = values[labels]
    return wide.dropna().mean(axis=1)


def compare(
    a: pd.Series, b: pd.Series, sesoi: float | None, alpha: float = ALPHA
) -> dict[str, Any]:
    """a minus b (Series indexed by seed): paired by seed on the seeds both sides finished
    when there are at least two, else Welch. 95% CI, two-sided p, TOST p at +/- sesoi.
    `alpha` sets the interval levels (1 - alpha and 1 - 2 alpha for TOST's interval)."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

    a, b = a.dropna(), b.dropna()
    common = a.index.intersection(b.index)
    out: dict[str, Any] = {
        "estimate": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p": math.nan,
        "tost_p": math.nan,
        "paired": False,
        "n_a": len(a),
        "n_b": len(b),
        "seeds_needed": math.nan,
        "identical": False,
        "testable": False,
        "note": "",
        "ci90_low": math.nan,
        "ci90_high": math.nan,
    }
    if len(common) >= 2:
        x, y = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
        d = x - y
        out.update(
            paired=True,
            n_a=len(common),
            n_b=len(common),
            testable=True,
            estimate=float(d.mean()),
            method="paired t (by seed)",
        )
        if np.all(d == 0):
            out.update(
                identical=True,
                ci_low=0.0,
                ci_high=0.0,
                p=1.0,
                ci90_low=0.0,
                ci90_high=0.0,
                tost_p=0.0 if sesoi else math.nan,
                note="every paired seed difference is exactly 0",
            )
            return out
        if np.ptp(d) == 0:  # a constant nonzero shift: no noise to test against
            out.update(
                ci_low=float(d[0]),
                ci_high=float(d[0]),
                p=0.0,
                ci90_low=float(d[0]),
                ci90_high=float(d[0]),
                tost_p=(0.0 if abs(d[0]) < sesoi else 1.0) if sesoi else math.nan,
                note="the same difference on every seed (no seed variance)",
            )
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = DescrStatsW(d)
            out["ci_low"], out["ci_high"] = map(float, ds.tconfint_mean(alpha=alpha))
            out["ci90_low"], out["ci90_high"] = map(float, ds.tconfint_mean(alpha=2 * alpha))
            out["p"] = float(ds.ttest_mean(0)[1])
            if sesoi:
                out["tost_p"] = float(ttost_paired(x, y, -sesoi, sesoi)[0])
        out["_need"] = ("paired", float(d.std(ddof=1)))
        if len(common) < max(len(a), len(b)):
            out["note"] = f"paired on the {len(common)} seeds both sides finished"
        return out
    out["method"] = "Welch t"
    if len(a) < 2 or len(b) < 2:
        out["note"] = "fewer than two finished seeds on a side"
        return out
    x, y = a.to_numpy(float), b.to_numpy(float)
    out.update(testable=True, estimate=float(x.mean() - y.mean()))
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        same = x[0] == y[0]
        out.update(
            ci_low=out["estimate"],
            ci_high=out["estimate"],
            p=1.0 if same else 0.0,
            ci90_low=out["estimate"],
            ci90_high=out["estimate"],
            note="no seed variance on either side",
        )
        if sesoi:
            out["tost_p"] = 0.0 if abs(out["estimate"]) < sesoi else 1.0
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = CompareMeans(DescrStatsW(x), DescrStatsW(y))
        out["ci_low"], out["ci_high"] = map(float, cm.tconfint_diff(alpha=alpha, usevar="unequal"))
        out["ci90_low"], out["ci90_high"] = map(
            float, cm.tconfint_diff(alpha=2 * alpha, usevar="unequal")
        )
        out["p"] = float(cm.ttest_ind(usevar="unequal")[1])
        if sesoi:
            out["tost_p"] = float(ttost_ind(x, y, -sesoi, sesoi, usevar="unequal")[0])
    pooled = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    out["_need"] = ("welch", pooled)
    return out


# -- one group --------------------------------------------------------------------------
def seeds_needed(comp: dict[str, Any], sesoi: float | None) -> float:
    """Seeds per level that would decide an inconclusive comparison (computed only then:
    the power solver is the slowest step of the analysis)."""
    kind, sd = comp.get("_need", ("", math.nan))
    if kind == "paired":
        return seeds_for_paired(sd, sesoi)
    if kind == "welch":
        return seeds_for_welch(sd, sesoi)
    return math.nan


def _row(group: str, contrast: str, question: str, expect: str, sesoi, **fields) -> dict:
    row = {c: math.nan for c in VERDICT_COLUMNS}
    row.update(
        group=group,
        contrast=contrast,
        question=question,
        expect=expect or "",
        sesoi=sesoi if sesoi else math.nan,
        evidence="",
        warnings="",
        method="",
        paired=False,
    )
    row.update({k: v for k, v in fields.items() if k in VERDICT_COLUMNS})
    return row


def _ols(formula: str, frame: pd.DataFrame):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.ols(formula, data=frame).fit()


def _anova(fit) -> pd.DataFrame:
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.stats.anova_lm(fit, typ=2)


def _seed_term(frame: pd.DataFrame) -> str:
    """`+ C(seed)` where seeds can act as a block (>= 2 seeds, each in >= 2 levels)."""
    seeds = frame.groupby("seed")["level"].nunique()
    return " + C(seed)" if len(seeds) >= 2 and (seeds >= 2).all() else ""


def variance_shares(fit, table: pd.DataFrame, names: dict[str, str]) -> dict[str, Any]:
    """How much of the metric's variance each term of a fitted model explains: eta squared,
    SS_term / SS_total, from the model's Type II ANOVA table (`table`, the one the analysis
    reports), with SS_total the sum of squares about the mean; the residual's share is
    SS_residual / SS_total. In a balanced design the shares add up to 1; where failed runs
    leave it unbalanced, Type II sums of squares need not add up, and the difference is
    kept as its own row rather than hidden. `names`: display names of the model's terms."""
    names = {**names, "C(seed)": "seed", "Residual": "residual"}
    total = float(fit.centered_tss)
    rows = [
        {
            "term": names.get(term, term),
            "sum_sq": float(ss),
            "df": float(df),
            "share": float(ss) / total if total > 0 else math.nan,
        }
        for term, ss, df in zip(table.index, table["sum_sq"], table["df"], strict=True)
    ]
    rest = 1.0 - sum(r["share"] for r in rows)
    if total > 0 and abs(rest) > 1e-9:
        rows.append(
            {
                "term": "not attributable (unbalanced design)",
                "sum_sq": rest * total,
                "df": math.nan,
                "share": rest,
            }
        )
    last = ["seed", "not attributable (unbalanced design)", "residual"]  # factors first
    rows.sort(key=lambda r: last.index(r["term"]) + 1 if r["term"] in last else 0)
    return {"model": fit.model.formula, "n": int(fit.nobs), "total_ss": total, "terms": rows}


def omnibus(values: pd.DataFrame, sesoi, sign: int, alpha: float = ALPHA) -> dict[str, Any]:
    """Do the levels (columns of `values`, rows = seeds) differ? Blocked OLS type II ANOVA
    `y ~ C(level) + C(seed)` and Welch's ANOVA (`anova_oneway(use_var="unequal")`, robust
    to one level with a collapsed or wild seed); p = min of the two, Bonferroni-doubled
    when both exist. Estimate: best minus worst level, compared pairwise (paired by seed);
    equivalence when every pair's 90% CI lies inside +/- sesoi."""
    from statsmodels.stats.oneway import anova_oneway

    long = values.stack().rename("y").reset_index()
    long.columns = ["seed", "level", "y"]
    usable = [c for c in values if values[c].notna().sum() >= 2]
    out: dict[str, Any] = {
        "testable": False,
        "p": math.nan,
        "p_ols": math.nan,
        "p_welch": math.nan,
        "identical": False,
        "table": [],
    }
    if len(usable) < 2:
        out["note"] = "fewer than two levels with at least two finished seeds"
        return out
    pairs = [(a, b) for i, a in enumerate(usable) for b in usable[i + 1 :]]
    comps = {(a, b): compare(values[a], values[b], sesoi, alpha) for a, b in pairs}
    if all(c["identical"] for c in comps.values()):
        out.update(
            testable=True,
            identical=True,
            p=1.0,
            note="every level gives the same number on every seed",
        )
        a, b = pairs[0]
        out["best"], out["worst"], out["comparison"] = a, b, comps[(a, b)]
        return out
    long = long[long["level"].isin(usable)]
    fit = _ols("y ~ C(level)" + _seed_term(long), long)
    if fit.df_resid > 0 and fit.ssr > 0:
        table = _anova(fit)
        out["p_ols"] = float(table.loc["C(level)", "PR(>F)"])
        out["table"] = _table_records(table)
        out["variance"] = variance_shares(fit, table, {})  # C(level): named by the caller
    groups = [values[c].dropna().to_numpy(float) for c in usable]
    if all(np.ptp(g) > 0 for g in groups):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["p_welch"] = float(anova_oneway(groups, use_var="unequal").pvalue)
    ps = [p for p in (out["p_ols"], out["p_welch"]) if math.isfinite(p)]
    if ps:
        out["p"] = min(1.0, min(ps) * len(ps))
        out["testable"] = True
    means = values[usable].mean()
    order = sorted(usable, key=lambda c: sign * means[c], reverse=True)
    best, worst = order[0], order[-1]
    out.update(
        best=best, worst=worst, comparison=comps.get((best, worst)) or _swap(comps[(worst, best)])
    )
    tost = [c["tost_p"] for c in comps.values()]
    out["tost_p"] = max(tost) if sesoi and all(math.isfinite(t) for t in tost) else math.nan
    if not out["testable"]:
        out["note"] = "no residual variance"
    return out


def _swap(comp: dict[str, Any]) -> dict[str, Any]:
    out = dict(comp)
    for key in ("estimate",):
        out[key] = -comp[key]
    out["ci_low"], out["ci_high"] = -comp["ci_high"], -comp["ci_low"]
    out["ci90_low"], out["ci90_high"] = -comp["ci90_high"], -comp["ci90_low"]
    out["n_a"], out["n_b"] = comp["n_b"], comp["n_a"]
    return out


def _table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    table = table.reset_index().rename(columns={"index": "term", "PR(>F)": "p"})
    return json_safe(table.to_dict(orient="records"))


def json_safe(obj: Any) -> Any:
    """Plain Python for json/yaml: numpy scalars to floats/ints, nan/inf to None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def trend(
    values: pd.DataFrame, x_of: dict[str, float], scale: str, sesoi, alpha: float = ALPHA
) -> dict[str, Any]:
    """Slope of the metric on the factor (log2 where declared) with seed as a block:
    OLS `y ~ x + C(seed)`. Estimate = slope per doubling (log2) or per unit; equivalence
    when the 90% CI of the change over the studied range lies inside +/- sesoi."""
    long = values.stack().rename("y").reset_index()
    long.columns = ["seed", "level", "y"]
    long["x"] = [
        math.log2(x_of[lv]) if scale == "log2" else float(x_of[lv]) for lv in long["level"]
    ]
    out: dict[str, Any] = {"testable": False, "identical": False}
    counts = values.notna().sum()
    if (counts >= 1).sum() < 2 or len(long) < 3 or long["x"].nunique() < 2:
        out["note"] = "fewer than two factor values with finished runs"
        return out
    full = values.dropna()
    if len(full) >= 2 and len(full) == len(values) and (np.ptp(full.to_numpy(), axis=1) == 0).all():
        out.update(
            testable=True,
            identical=True,
            estimate=0.0,
            ci_low=0.0,
            ci_high=0.0,
            p=1.0,
            tost_p=0.0 if sesoi else math.nan,
            n=len(long),
        )
        return out
    fit = _ols("y ~ x" + _seed_term(long), long)
    if not (fit.df_resid > 0 and fit.ssr > 0):
        out["note"] = "no residual degrees of freedom or variance"
        return out
    span = long["x"].max() - long["x"].min()
    out["variance"] = variance_shares(fit, _anova(fit), {})  # x: named by the caller
    lo, hi = map(float, fit.conf_int(alpha=alpha).loc["x"])
    lo90, hi90 = map(float, fit.conf_int(alpha=2 * alpha).loc["x"])
    out.update(
        testable=True,
        estimate=float(fit.params["x"]),
        ci_low=lo,
        ci_high=hi,
        p=float(fit.pvalues["x"]),
        n=len(long),
        span=float(span),
        model=f"ols('y ~ x{_seed_term(long)}'), x = "
        f"{'log2(factor)' if scale == 'log2' else 'factor'}",
    )
    out["tost_p"] = math.nan
    if sesoi:
        # TOST on the change over the range: slope * span within +/- sesoi
        se, df = float(fit.bse["x"]), float(fit.df_resid)
        bound = sesoi / span
        p_low = st.t.sf((out["estimate"] + bound) / se, df)
        p_high = st.t.cdf((out["estimate"] - bound) / se, df)
        out["tost_p"] = float(max(p_low, p_high))
        out["ci90_range"] = (lo90 * span, hi90 * span)
        n_seeds = max(1, long["seed"].nunique())
        # SE of the change over the range with one seed: se * span * sqrt(n_seeds)
        out["seeds_needed"] = seeds_for_linear(se * span * math.sqrt(n_seeds), sesoi)
    return out


def factorial(
    values_long: pd.DataFrame,
    factors: list[str],
    orders: dict[str, list],
    sesoi,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """Type II ANOVA `y ~ (C(a, Sum) + C(b, Sum) + ...)**2 + C(seed)`: one entry per main
    effect and two-way interaction. Two-level terms also get an estimate with CIs from the
    sum-coded coefficients: main = mean(last level) - mean(first level) = -2 b; interaction
    = difference of differences (last - first of a at b's last level minus at b's first)
    = 4 b."""
    frame = values_long.copy()
    names = {f: f"f{i}" for i, f in enumerate(factors)}
    for f in factors:
        frame[names[f]] = pd.Categorical(
            frame[f].astype(str), categories=[str(v) for v in orders[f]]
        )
    terms = [f"C({names[f]}, Sum)" for f in factors]
    formula = f"y ~ ({' + '.join(terms)})**2" + _seed_term(frame)
    fit = _ols(formula, frame)
    out = []
    if not (fit.df_resid > 0 and fit.ssr > 0):
        return [
            {
                "term": f"main:{f}",
                "testable": False,
                "note": "no residual degrees of freedom or variance",
            }
            for f in factors
        ]
    table = _anova(fit)
    ci95, ci90 = fit.conf_int(alpha=alpha), fit.conf_int(alpha=2 * alpha)
    n_seeds = max(1, frame["seed"].nunique())
    sigma = math.sqrt(fit.scale)
    cells = len(frame) / n_seeds

    def coef(*fs):
        key = ":".join(f"C({names[f]}, Sum)[S.{orders[f][0]}]" for f in fs)
        return key if key in fit.params.index else None

    def entry(kind, fs, term_name, scale_factor):
        p = float(table.loc[term_name, "PR(>F)"]) if term_name in table.index else math.nan
        e: dict[str, Any] = {
            "term": f"{kind}:{':'.join(fs)}",
            "testable": math.isfinite(p),
            "p": p,
            "estimate": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "tost_p": math.nan,
            "factors": fs,
            "F": float(table.loc[term_name, "F"]) if term_name in table.index else math.nan,
        }
        key = coef(*fs) if all(len(orders[f]) == 2 for f in fs) else None
        if key is not None:
            e["estimate"] = float(scale_factor * fit.params[key])
            lo, hi = sorted(scale_factor * ci95.loc[key])
            e["ci_low"], e["ci_high"] = float(lo), float(hi)
            if sesoi:
                se, df = abs(scale_factor) * float(fit.bse[key]), float(fit.df_resid)
                p_low = st.t.sf((e["estimate"] + sesoi) / se, df)
                p_high = st.t.cdf((e["estimate"] - sesoi) / se, df)
                e["tost_p"] = float(max(p_low, p_high))
                lo90, hi90 = sorted(scale_factor * ci90.loc[key])
                e["ci90_low"], e["ci90_high"] = float(lo90), float(hi90)
            # SE of a two-level contrast with one seed: sigma * |scale| / sqrt(cells)
            e["seeds_needed"] = seeds_for_linear(
                sigma * abs(scale_factor) / math.sqrt(cells), sesoi
            )
        elif len(fs) == 1:
            means = frame.groupby(names[fs[0]], observed=True)["y"].mean()
            e["estimate"] = float(means.max() - means.min())
            e["note"] = "range of marginal means (more than two levels: no single contrast)"
        return e

    for f in factors:
        out.append(entry("main", [f], f"C({names[f]}, Sum)", -2.0))
    for i, f in enumerate(factors):
        for g in factors[i + 1 :]:
            out.append(entry("interaction", [f, g], f"C({names[f]}, Sum):C({names[g]}, Sum)", 4.0))
    out.append({"anova": _table_records(table.rename(index=lambda t: _rename_term(t, names)))})
    shown = {t: _rename_term(t, names) for t in table.index}
    variance = variance_shares(fit, table, shown)
    variance["model"] = _rename_term(variance["model"], names)
    out.append({"variance": variance})
    return out


def _name_term(variance: dict[str, Any], term: str, name: str, in_model: str) -> None:
    """Name a model term after what it stands for, in the table and in the formula."""
    import re

    for row in variance["terms"]:
        if row["term"] == term:
            row["term"] = name
    variance["model"] = re.sub(
        rf"(?<![\w(]){re.escape(term)}(?![\w)])", in_model, variance["model"]
    )


def _rename_term(term: str, names: dict[str, str]) -> str:
    for f, n in names.items():
        term = term.replace(f"C({n}, Sum)", f)
    return term


# -- failures and adequacy --------------------------------------------------------------
def level_table(
    runs: pd.DataFrame,
    experiments: list[str],
    labels: dict[str, str],
    metric: str,
    baseline: str | None,
) -> list[dict[str, Any]]:
    rows = []
    base = runs[runs["experiment"] == baseline] if baseline else None
    bounds = BOUNDED_ABOVE_BY_1.get(metric)
    for exp in experiments:
        frame = runs[runs["experiment"] == exp]
        ok = frame[frame["status"] == "ok"]
        values = pd.to_numeric(ok[metric], errors="coerce") if metric in ok else pd.Series()
        mean, sd, lo, hi = t_interval(values)
        clipped = False
        if bounds and math.isfinite(hi) and (hi > bounds[1] or lo < bounds[0]):
            lo, hi, clipped = max(lo, bounds[0]), min(hi, bounds[1]), True
        steps = (
            pd.to_numeric(ok["optimizer_steps"], errors="coerce").mean()
            if "optimizer_steps" in ok
            else math.nan
        )
        row = {
            "experiment": exp,
            "label": labels[exp],
            "n_runs": len(frame),
            "n_ok": len(ok),
            "n_failed": int(len(frame) - len(ok)),
            "statuses": {
                s: int(n)
                for s, n in frame.loc[frame["status"] != "ok", "status"].value_counts().items()
            },
            "mean": mean,
            "sd": sd,
            "ci_low": lo,
            "ci_high": hi,
            "ci_clipped": clipped,
            "optimizer_steps": float(steps) if pd.notna(steps) else math.nan,
            "n_not_converged": not_converged(ok),
            "fisher_p": math.nan,
        }
        if base is not None and exp != baseline and len(base):
            table = [
                [row["n_failed"], row["n_ok"]],
                [int((base["status"] != "ok").sum()), int((base["status"] == "ok").sum())],
            ]
            if table[0][0] + table[1][0] > 0:
                row["fisher_p"] = float(st.fisher_exact(table).pvalue)
        rows.append(row)
    return rows


def not_converged(ok: pd.DataFrame) -> int:
    """Runs whose best validation epoch is their last epoch (still improving when stopped)."""
    if not {"best_epoch", "epochs_run"} <= set(ok):
        return 0
    best = pd.to_numeric(ok["best_epoch"], errors="coerce")
    last = pd.to_numeric(ok["epochs_run"], errors="coerce")
    return int((best >= last).sum())


def rank_check(runs: pd.DataFrame, experiments: list[str], metric: str, sign: int) -> dict:
    """Kruskal-Wallis where a run that did not finish normally ranks worst (below every
    finished run) instead of being dropped."""
    values = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else None
    if values is None:
        return {"p": math.nan, "note": "no metric"}
    scores = sign * values
    worst = scores[runs["status"] == "ok"].min()
    scores = scores.where(runs["status"] == "ok", worst - 1 if pd.notna(worst) else -1.0)
    samples = [scores[runs["experiment"] == e].dropna().to_numpy(float) for e in experiments]
    samples = [s for s in samples if len(s)]
    if len(samples) < 2 or len(np.unique(np.concatenate(samples))) < 2:
        return {"p": math.nan, "note": "fewer than two levels, or no variation"}
    return {
        "p": float(st.kruskal(*samples).pvalue),
        "n_failed": int((runs["status"] != "ok").sum()),
    }


def adequacy(levels: list[dict[str, Any]], metric: str) -> list[str]:
    warn = []
    total = sum(lv["n_ok"] for lv in levels)
    late = sum(lv["n_not_converged"] for lv in levels)
    if total and late:
        warn.append(
            f"{late} of {total} finished runs had their best epoch at the last epoch "
            "(not converged: more epochs may change the answer)"
        )
    steps = [lv["optimizer_steps"] for lv in levels if math.isfinite(lv["optimizer_steps"])]
    if steps and min(steps) > 0 and max(steps) / min(steps) >= 1.5:
        warn.append(
            f"optimizer steps differ {max(steps) / min(steps):.1f}x across levels "
            f"({min(steps):.0f} to {max(steps):.0f}): at a fixed epoch budget, "
            "larger batches get fewer updates"
        )
    clipped = [lv["label"] for lv in levels if lv["ci_clipped"]]
    if clipped:
        warn.append(
            f"95% CI of {', '.join(clipped)} leaves {metric}'s range and is clipped "
            "in the tables (few seeds, wide spread)"
        )
    failed = [f"{lv['label']} {lv['n_failed']}/{lv['n_runs']}" for lv in levels if lv["n_failed"]]
    if failed:
        warn.append(
            "runs that did not finish normally (excluded from means, ranked worst in "
            "the rank check): " + ", ".join(failed)
        )
    return warn


# -- evidence text ----------------------------------------------------------------------
def ci_name(alpha: float = ALPHA) -> str:
    """The name of a 1 - alpha interval with the digits alpha needs: '95% CI' at 0.05,
    '98.4% CI' at a sequential look's nominal level 0.016, '99.995% CI' at 5e-5."""
    pct = 100 * alpha
    decimals = max(0, 1 - math.floor(math.log10(pct))) if pct > 0 else 0
    text = f"{100 - pct:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "% CI"


def evidence(row: dict[str, Any], metric: str, what: str, alpha: float = ALPHA) -> str:
    """'bs16 − bs32 = −0.05 test_r2 (95% CI −0.08 to −0.02), paired by seed, Holm p=0.01';
    the interval is named by its level, 1 - alpha (a sequential look's: '98.4% CI')."""
    est = row.get("estimate", math.nan)
    if not math.isfinite(_f(est)):
        return row.get("evidence", "") or ""
    text = f"{what} = {est:+.3g} {metric}"
    if math.isfinite(_f(row.get("ci_low"))):
        text += f" ({ci_name(alpha)} {_fmt(row['ci_low'])} to {_fmt(row['ci_high'])})"
    if row.get("method"):
        text += f", {row['method']}"
    if math.isfinite(_f(row.get("p_adj"))):
        text += f", Holm-adjusted {_p_is(row['p_adj'])}"
    if math.isfinite(_f(row.get("tost_p"))):
        text += f", TOST {_p_is(row['tost_p'])} at ±{_fmt(row['sesoi'])}"
    if math.isfinite(_f(row.get("seeds_needed"))) and row.get("verdict") == "inconclusive":
        text += f"; ~{int(row['seeds_needed'])} seeds per level would decide it"
    return text


def _labels(side) -> list[str]:
    return [side] if isinstance(side, str) else list(side)


def _side_name(side) -> str:
    labels = _labels(side)
    return labels[0] if len(labels) == 1 else "mean(" + ", ".join(labels) + ")"


# -- the study --------------------------------------------------------------------------
def analyse_group(
    name: str,
    spec: dict[str, Any],
    runs: pd.DataFrame,
    configs: dict[str, dict[str, Any]],
    metric: str,
    sesoi: float | None,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    sign = 1 if higher_is_better(metric) else -1
    experiments = spec["experiments"]
    labels = {e: configs[e]["label"] for e in experiments}
    ok = runs[runs["status"] == "ok"]
    metric_values = (
        pd.to_numeric(ok[metric], errors="coerce")
        if metric in ok
        else pd.Series(math.nan, index=ok.index)
    )
    values = (
        ok.assign(y=metric_values)
        .pivot_table(index="seed", columns="experiment", values="y", aggfunc="first")
        .reindex(columns=experiments)
        .rename(columns=labels)
    )
    levels = level_table(runs, experiments, labels, metric, spec.get("baseline"))
    warn = adequacy(levels, metric)
    rows: list[dict[str, Any]] = []
    expect = spec.get("expect") or {}
    question = spec.get("question") or ""
    kind = spec.get("kind", "grid")
    factors = [
        f
        for f in spec.get("factors", [])
        if len({repr(configs[e].get(f)) for e in experiments}) > 1
    ]
    result: dict[str, Any] = {
        "levels": levels,
        "warnings": warn,
        "factors": factors,
        "kind": kind,
        "rank_check": rank_check(runs, experiments, metric, sign),
    }
    group_expect = "none" if expect.get("none") else expect.get("trend", "")

    if kind == "grid" and len(factors) >= 2:
        long = ok.assign(y=metric_values).dropna(subset=["y"]).copy()
        long["level"] = long["experiment"].map(labels)
        orders = {f: list(dict.fromkeys(configs[e].get(f) for e in experiments)) for f in factors}
        for f in factors:
            long[f] = long["experiment"].map(lambda e, f=f: configs[e].get(f))
        entries = factorial(long, factors, orders, sesoi, alpha) if len(long) > 2 else []
        anova = next((e["anova"] for e in entries if "anova" in e), [])
        result["anova"] = anova
        variance = next((e["variance"] for e in entries if "variance" in e), None)
        terms = [e for e in entries if "term" in e]
        for family in ("main", "interaction"):
            fam = [e for e in terms if e["term"].startswith(family)]
            for e, adj in zip(fam, holm([e.get("p", math.nan) for e in fam]), strict=True):
                e["p_adj"] = adj
        for e in terms:
            fs = e.get("factors", [])
            if e["term"].startswith("main") and fs and len(orders[fs[0]]) == 2:
                what = f"{fs[0]}={orders[fs[0]][-1]} − {fs[0]}={orders[fs[0]][0]}"
            elif e["term"].startswith("interaction") and all(len(orders[f]) == 2 for f in fs):
                a, b = fs
                what = (
                    f"difference of differences (effect of {a} at {b}={orders[b][-1]} "
                    f"minus at {b}={orders[b][0]})"
                )
            else:
                what = f"range of {e['term']} marginal means"
            row = _row(
                name,
                e["term"],
                f"{question} [{e['term']}]".strip(),
                group_expect if group_expect == "none" else "",
                sesoi,
                estimate=e.get("estimate", math.nan),
                ci_low=e.get("ci_low", math.nan),
                ci_high=e.get("ci_high", math.nan),
                p=e.get("p", math.nan),
                p_adj=e.get("p_adj", math.nan),
                tost_p=e.get("tost_p", math.nan),
                seeds_needed=e.get("seeds_needed", math.nan),
                method="type II factorial ANOVA, seed as block",
                paired=True,
                n_a=len(long),
                n_b=len(long),
            )
            row["verdict"] = decide(
                row["expect"],
                row["estimate"],
                row["p_adj"],
                row["tost_p"],
                sesoi,
                1,
                e.get("testable", False),
                alpha=alpha,
            )
            row["evidence"] = (
                evidence(row, metric, what, alpha)
                + (
                    f"; F = {_fmt(e.get('F', math.nan))}"
                    if math.isfinite(e.get("F", math.nan))
                    else ""
                )
                + (f"; {e['note']}" if e.get("note") else "")
            )
            rows.append(row)
    elif "trend" in expect and len(factors) == 1:
        f = factors[0]
        x_of = {labels[e]: configs[e].get(f) for e in experiments}
        scale = expect.get("scale", "linear")
        tr = trend(values, x_of, scale, sesoi, alpha)
        unit = "per doubling of " + f if scale == "log2" else "per unit of " + f
        row = _row(
            name,
            "(group)",
            question or f"does {metric} {expect['trend'][:-3]}e with {f}?",
            expect["trend"],
            sesoi,
            estimate=tr.get("estimate"),
            ci_low=tr.get("ci_low"),
            ci_high=tr.get("ci_high"),
            p=tr.get("p"),
            p_adj=tr.get("p"),
            tost_p=tr.get("tost_p", math.nan),
            seeds_needed=tr.get("seeds_needed", math.nan),
            paired=True,
            method=f"trend: {tr.get('model', 'OLS slope')}",
            n_a=tr.get("n", 0),
            n_b=tr.get("n", 0),
        )
        row["verdict"] = decide(
            expect["trend"],
            _f(row["estimate"]),
            _f(row["p_adj"]),
            _f(row["tost_p"]),
            sesoi,
            1,
            tr["testable"],
            tr["identical"],
            alpha=alpha,
        )
        row["evidence"] = (
            evidence(row, metric, f"slope {unit}", alpha) if tr["testable"] else tr.get("note", "")
        )
        if sesoi and tr.get("ci90_range"):
            lo, hi = tr["ci90_range"]
            row["evidence"] += (
                f"; change over the studied range: {ci_name(2 * alpha)} {_fmt(lo)} to {_fmt(hi)}"
            )
        means = values.mean()
        order = sorted(means.dropna().index, key=lambda lv: x_of[lv])
        step = np.diff([means[lv] for lv in order])
        if len(step) and tr["testable"] and not tr["identical"]:
            want = 1 if expect["trend"] == "increasing" else -1
            against = [
                f"{a} → {b}"
                for a, b, d in zip(order, order[1:], step, strict=False)
                if np.sign(d) == -want
            ]
            if against:
                row["evidence"] += (
                    f"; level means are not monotone ({', '.join(against)} "
                    f"goes the other way): the slope summarises a curve"
                )
        variance = tr.pop("variance", None)
        if variance:
            trend_of = f"log2({f})" if scale == "log2" else f
            _name_term(variance, "x", f"{f} (linear in {trend_of})", trend_of)
        result["trend"] = tr
        rows.append(row)
    else:
        om = omnibus(values, sesoi, sign, alpha)
        comp = om.get("comparison") or {}
        q = question
        if kind == "list":
            q = (
                f"do these {len(experiments)} configurations differ? (their levels change "
                f"{', '.join(factors) or 'several settings'} together"
                + (
                    f", so this row cannot answer '{question}'; "
                    + (
                        "the contrasts below do)"
                        if spec.get("contrasts")
                        else "declare `contrasts` for that)"
                    )
                    if question
                    else ")"
                )
            )
        row = _row(
            name,
            "(group)",
            q,
            group_expect,
            sesoi,
            estimate=comp.get("estimate", math.nan),
            ci_low=comp.get("ci_low", math.nan),
            ci_high=comp.get("ci_high", math.nan),
            p=om["p"],
            p_adj=om["p"],
            tost_p=om.get("tost_p", math.nan),
            paired=comp.get("paired", False),
            n_a=comp.get("n_a", 0),
            n_b=comp.get("n_b", 0),
            method="omnibus: min(blocked OLS ANOVA, Welch ANOVA) p, x2 (Bonferroni)",
        )
        row["verdict"] = decide(
            group_expect,
            row["estimate"],
            row["p_adj"],
            row["tost_p"],
            sesoi,
            sign,
            om["testable"],
            om["identical"],
            alpha=alpha,
        )
        if row["verdict"] == "inconclusive":
            row["seeds_needed"] = seeds_needed(comp, sesoi)
        if om["identical"]:
            row["evidence"] = (
                f"every level gives exactly the same {metric} on every seed "
                f"({len(values.columns)} levels × {len(values)} seeds)"
            )
        elif om["testable"]:
            row["evidence"] = evidence(
                row, metric, f"best − worst level ({om['best']} − {om['worst']})", alpha
            ) + (f"; OLS ANOVA {_p_is(om['p_ols'])}, Welch ANOVA {_p_is(om['p_welch'])}")
            if sesoi:
                row["evidence"] += (
                    f"; equivalence needs every pair's {ci_name(2 * alpha)} inside ±sesoi"
                )
        else:
            row["evidence"] = om.get("note", "")
        variance = om.get("variance")
        if variance:
            level = factors[0] if kind == "grid" and len(factors) == 1 else "configuration"
            _name_term(variance, "C(level)", level, f"C({level})")
        result["omnibus"] = {k: v for k, v in om.items() if k not in ("comparison", "variance")}
        rows.append(row)
    # the share of the metric's variance each term of the group's model explains
    result["variance"] = variance

    # planned contrasts
    contrast_rows = []
    for c in spec.get("contrasts", []) or []:
        a, b = per_seed(values, _labels(c["a"])), per_seed(values, _labels(c["b"]))
        comp = compare(a, b, sesoi, alpha)
        row = _row(
            name,
            c["name"],
            f"{_side_name(c['a'])} vs {_side_name(c['b'])}",
            c.get("expect", ""),
            sesoi,
            estimate=comp["estimate"],
            ci_low=comp["ci_low"],
            ci_high=comp["ci_high"],
            p=comp["p"],
            tost_p=comp["tost_p"],
            paired=comp["paired"],
            n_a=comp["n_a"],
            n_b=comp["n_b"],
            method=comp.get("method", ""),
        )
        row["_comp"] = comp
        contrast_rows.append(row)
    for row, adj in zip(contrast_rows, holm([r["p"] for r in contrast_rows]), strict=True):
        comp = row.pop("_comp")
        row["p_adj"] = adj if not comp["identical"] else 1.0
        row["verdict"] = decide(
            row["expect"],
            row["estimate"],
            row["p_adj"],
            row["tost_p"],
            sesoi,
            sign,
            comp["testable"],
            comp["identical"],
            alpha=alpha,
        )
        if row["verdict"] == "inconclusive":
            row["seeds_needed"] = seeds_needed(comp, sesoi)
        row["evidence"] = (
            evidence(row, metric, row["question"].replace(" vs ", " − "), alpha)
            if comp["testable"]
            else comp["note"]
        )
        if comp["note"] and comp["testable"]:
            row["evidence"] += f"; {comp['note']}"
        rows.append(row)
    for row in rows:
        if row["verdict"] != "inconclusive":
            row["seeds_needed"] = math.nan
        if not sesoi and row["verdict"] == "inconclusive":
            row["evidence"] += "; no sesoi declared, so no equivalence claim is possible"
        row["warnings"] = "; ".join(warn)
    result["rows"] = rows
    return result


def recommend(
    levels: list[dict[str, Any]],
    summary: pd.DataFrame,
    configs: dict[str, dict[str, Any]],
    metric: str,
) -> dict[str, Any]:
    """The best configuration by mean among those whose every seed finished normally (a
    configuration with a failed or diverged seed is never recommended), with the runner-up
    it is compared with (paired by seed)."""
    sign = 1 if higher_is_better(metric) else -1
    seen, candidates, excluded = set(), [], []
    for lv in sorted(
        levels, key=lambda r: (-sign * r["mean"]) if math.isfinite(r["mean"]) else math.inf
    ):
        key = configs.get(lv["experiment"], {}).get("config_hash", lv["experiment"])
        if key in seen:
            continue
        seen.add(key)
        if lv["n_failed"]:
            excluded.append(
                {
                    "experiment": lv["experiment"],
                    "reason": f"{lv['n_failed']} of {lv['n_runs']} seeds did not finish "
                    f"normally ({lv['statuses']})",
                }
            )
        elif lv["n_ok"] < 2:
            excluded.append(
                {"experiment": lv["experiment"], "reason": f"only {lv['n_ok']} finished seed(s)"}
            )
        elif math.isfinite(lv["mean"]):
            candidates.append(lv)
    out: dict[str, Any] = {
        "metric": metric,
        "direction": "higher is better" if sign > 0 else "lower is better",
        "excluded": excluded,
    }
    if not candidates:
        out.update(
            recommended=None,
            reason="no configuration finished every seed with at "
            "least two seeds; nothing can be recommended",
        )
        return out
    best = candidates[0]
    ok = summary[summary["status"] == "ok"]

    def series(exp):
        frame = ok[ok["experiment"] == exp]
        return pd.Series(
            pd.to_numeric(frame[metric], errors="coerce").to_numpy(), index=frame["seed"].to_numpy()
        )

    cfg = {
        k: v
        for k, v in configs.get(best["experiment"], {}).items()
        if k not in ("experiment", "group", "label", "overrides")
    }
    out["recommended"] = {
        "experiment": best["experiment"],
        "label": best["label"],
        "mean": best["mean"],
        "sd": best["sd"],
        "ci_low": best["ci_low"],
        "ci_high": best["ci_high"],
        "n": best["n_ok"],
        "settings": cfg,
    }
    same = []  # configurations whose every seed gives exactly the best one's numbers
    for cand in candidates[1:]:
        if compare(series(best["experiment"]), series(cand["experiment"]), None)["identical"]:
            same.append(cand["experiment"])
    if same:
        out["identical_results"] = same
    candidates = [c for c in candidates if c["experiment"] not in same]
    if len(candidates) > 1:
        other = candidates[1]
        comp = compare(series(best["experiment"]), series(other["experiment"]), None)
        distinct = math.isfinite(comp["p"]) and comp["p"] < ALPHA
        out["runner_up"] = {
            "experiment": other["experiment"],
            "mean": other["mean"],
            "difference": comp["estimate"],
            "ci_low": comp["ci_low"],
            "ci_high": comp["ci_high"],
            "p": comp["p"],
            "method": comp.get("method", ""),
            "distinguishable": distinct,
        }
        out["reason"] = f"best mean {metric} among configurations whose every seed finished; " + (
            "it beats the runner-up (95% CI of the difference excludes 0)"
            if distinct
            else "the runner-up cannot be told apart at the "
            "seeds run: either is a defensible choice"
        )
    else:
        out["reason"] = "the only configuration whose every seed finished"
    return json_safe(out)


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
    return (
        f"`{pick['group']}` / `{pick['contrast']}` predicts {expect}; the estimate is "
        f"{_fmt(pick['estimate'])} ({ci_name(_level(pick))} {_fmt(pick['ci_low'])} to "
        f"{_fmt(pick['ci_high'])}), Holm-adjusted {_p_is(pick['p_adj'])}"
        + (
            f", TOST {_p_is(pick['tost_p'])} at ±{_fmt(pick['sesoi'])}"
            if math.isfinite(_f(pick["tost_p"]))
            else ""
        )
        + f", so the verdict is **{pick['verdict']}**."
    )


def _level(row: dict[str, Any]) -> float:
    level = _f(row.get("level", ALPHA))
    return level if math.isfinite(level) and 0 < level < 1 else ALPHA


def identical_configs(configs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Experiments of different groups that resolve to the same config (a shared baseline):
    the same seed gives the same numbers, so they are not independent evidence."""
    by_hash: dict[str, list[str]] = {}
    for exp, cfg in configs.items():
        by_hash.setdefault(cfg.get("config_hash", exp), []).append(exp)
    return [exps for exps in by_hash.values() if len(exps) > 1]


def analyse_study(
    summary: pd.DataFrame, doc: dict[str, Any], alpha: float = ALPHA
) -> dict[str, Any]:
    """All questions of a study (see the module docstring). `alpha` is the level the
    verdicts and intervals use: ALPHA for a fixed study, the nominal level of the look for a
    round of a sequential one (issue 11, hpstudy.sequential)."""
    metric = doc["metric"]
    sesoi = doc.get("sesoi")
    configs = {e["experiment"]: e for e in doc["experiments"]}
    groups, rows, levels = {}, [], []
    for name, spec in doc["groups"].items():
        runs = summary[summary["group"] == name] if "group" in summary else summary.iloc[:0]
        res = analyse_group(name, spec, runs, configs, metric, sesoi, alpha)
        groups[name] = res
        rows += res["rows"]
        levels += [{"group": name, **lv} for lv in res["levels"]]
    verdicts = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    return {
        "metric": metric,
        "alpha": alpha,
        "sesoi": sesoi,
        "rule": RULE,
        "higher_is_better": higher_is_better(metric),
        "verdicts": verdicts,
        "levels": levels,
        "groups": groups,
        "worked_example": worked_example(rows),
        "identical_configs": identical_configs(configs),
        "recommended": recommend(levels, summary, configs, metric),
    }


def stats_document(result: dict[str, Any]) -> dict[str, Any]:
    """stats.json: everything analyse_study found, JSON-safe (verdicts as records)."""
    doc = {k: v for k, v in result.items() if k != "verdicts"}
    doc["verdicts"] = result["verdicts"].to_dict(orient="records")
    return json_safe(doc)


def write_outputs(
    result: dict[str, Any],
    out_stats: str | Path | None = None,
    out_verdicts: str | Path | None = None,
    out_recommended: str | Path | None = None,
) -> None:
    """stats.json, verdicts.csv (one row per question) and recommended.yaml."""
    import yaml

    from hpstudy.atomic import write_csv, write_json, write_text

    if out_stats is not None:
        write_json(out_stats, stats_document(result))
    if out_verdicts is not None:
        write_csv(out_verdicts, result["verdicts"])
    if out_recommended is not None:
        text = yaml.safe_dump(json_safe(result["recommended"]), sort_keys=False, allow_unicode=True)
        write_text(out_recommended, "# hpstudy: the recommended configuration (issue 10)\n" + text)
