"""How much of the metric's variance each term of a group's model explains: descriptive
only. Pooled OLS (`y ~ C(level) + C(seed)`, `y ~ x + C(seed)`, the factorial
`y ~ (a + b)**2 + C(seed)`) assumes every level is equally noisy, so its p-values are not
used for any verdict (those are per-seed tests, hpstudy.analysis.inference); its sums of
squares give the report's variance shares and the factorial ANOVA table, printed with the
levels' noise check (hpstudy.analysis.levels.noise_check)."""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import pandas as pd

from hpstudy.analysis.outputs import json_safe


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


def _long(values: pd.DataFrame) -> pd.DataFrame:
    long = values.stack().rename("y").reset_index()
    long.columns = ["seed", "level", "y"]
    return long


def shares(fit, table: pd.DataFrame, names: dict[str, str]) -> dict[str, Any]:
    """Eta squared of each term, SS_term / SS_total, from the model's Type II ANOVA table,
    with SS_total the sum of squares about the mean; the residual's share is SS_residual /
    SS_total. In a balanced design the shares add up to 1; where failed runs leave it
    unbalanced, Type II sums of squares need not add up, and the difference is kept as its
    own row rather than hidden. `names`: display names of the model's terms."""
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


def _name_term(variance: dict[str, Any], term: str, name: str, in_model: str) -> None:
    """Name a model term after what it stands for, in the table and in the formula."""
    for row in variance["terms"]:
        if row["term"] == term:
            row["term"] = name
    variance["model"] = re.sub(
        rf"(?<![\w(]){re.escape(term)}(?![\w)])", in_model, variance["model"]
    )


def _fitted(formula: str, frame: pd.DataFrame):
    fit = _ols(formula, frame)
    if not (fit.df_resid > 0 and fit.ssr > 0):
        return None, None
    return fit, _anova(fit)


def of_levels(values: pd.DataFrame, level: str) -> dict[str, Any] | None:
    """`y ~ C(level) + C(seed)`, the level named `level` (the factor, or "configuration")."""
    long = _long(values)
    if long["level"].nunique() < 2:
        return None
    fit, table = _fitted("y ~ C(level)" + _seed_term(long), long)
    if fit is None:
        return None
    out = shares(fit, table, {})
    _name_term(out, "C(level)", level, f"C({level})")
    return out


def of_trend(values: pd.DataFrame, x: dict[str, float], factor: str, scale: str):
    """`y ~ x + C(seed)`, x the factor on the trend's scale."""
    long = _long(values)
    long["x"] = long["level"].map(x)
    if long["x"].nunique() < 2:
        return None
    fit, table = _fitted("y ~ x" + _seed_term(long), long)
    if fit is None:
        return None
    out = shares(fit, table, {})
    trend_of = f"log2({factor})" if scale == "log2" else factor
    _name_term(out, "x", f"{factor} (linear in {trend_of})", trend_of)
    return out


def of_factorial(long: pd.DataFrame, factors: list[str], orders: dict[str, list]):
    """`y ~ (C(a, Sum) + C(b, Sum) + ...)**2 + C(seed)`: the Type II ANOVA table (as records)
    and the variance shares, terms named after the factors."""
    frame = long.copy()
    names = {f: f"f{i}" for i, f in enumerate(factors)}
    for f in factors:
        frame[names[f]] = pd.Categorical(
            frame[f].astype(str), categories=[str(v) for v in orders[f]]
        )
    terms = [f"C({names[f]}, Sum)" for f in factors]
    fit, table = _fitted(f"y ~ ({' + '.join(terms)})**2" + _seed_term(frame), frame)
    if fit is None:
        return [], None

    def rename(term: str) -> str:
        for f, n in names.items():
            term = term.replace(f"C({n}, Sum)", f)
        return term

    records = (
        table.rename(index=rename).reset_index().rename(columns={"index": "term", "PR(>F)": "p"})
    )
    variance = shares(fit, table, {t: rename(t) for t in table.index})
    variance["model"] = rename(variance["model"])
    return json_safe(records.to_dict(orient="records")), variance
