"""The tests behind every verdict.

Every question is a linear combination of the levels' means, a weight vector `w` over the
group's levels (a contrast: +1 / -1; a slope: the centred factor values; a main effect or
an interaction: cell weights). Where seeds are shared, the combination is computed on every
seed, d_s = sum_l w_l y_{s,l}, and tested with a one-sample t (statsmodels' DescrStatsW):
with y_{s,l} = mu_l + block_s + e_{s,l}, the block cancels (sum w = 0) and the d_s are
independent and identically distributed whatever the levels' variances and correlations, so
the test is exact under unequal noise and keeps the seed blocking. Without shared seeds the
combination of the level means is tested with Welch-Satterthwaite degrees of freedom (for two
levels this is statsmodels' CompareMeans with usevar="unequal"; tests check both agree).

Questions with several degrees of freedom (do k levels differ, a k-level main effect, a
curvature with several polynomial terms) run one of two tests that are valid under any
covariance of the per-seed contrasts: Hotelling's T^2 on the per-seed basis contrasts
(statsmodels' test_mvmean), or Bonferroni over a family of one-degree-of-freedom tests. Which
one is chosen from the design alone (seeds, degrees of freedom, family size), never from the
data: Hotelling's T^2 once the seeds exceed the contrasts by HOTELLING_MIN_DF, else
Bonferroni.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

# per-seed differences below this (relative to the values) are floating-point noise, not
# an effect: a "constant shift" of 1e-16 is zero
RESOLUTION = 64 * np.finfo(float).eps


@dataclass(frozen=True)
class TTest:
    """A t statistic for one linear combination: `estimate`, its standard error `se` on
    `df` degrees of freedom; `sd` is the SD of one seed's effect (paired) or the pooled SD of
    one run (Welch), what a power analysis needs; `n` seeds (paired) or runs per level."""

    estimate: float
    se: float
    df: float
    n: int
    sd: float
    paired: bool
    method: str

    @property
    def testable(self) -> bool:
        return math.isfinite(self.estimate) and math.isfinite(self.se) and self.df > 0

    def p(self) -> float:
        """Two-sided p of estimate = 0."""
        if not self.testable:
            return math.nan
        if self.se == 0:
            return 0.0 if self.estimate != 0 else 1.0
        return float(2 * st.t.sf(abs(self.estimate) / self.se, self.df))

    def ci(self, alpha: float) -> tuple[float, float]:
        """The 1 - alpha interval."""
        if not self.testable:
            return math.nan, math.nan
        half = float(st.t.ppf(1 - alpha / 2, self.df)) * self.se
        return self.estimate - half, self.estimate + half

    def tost(self, margin: float | None) -> float:
        """p of |effect| < margin: the larger of the two one-sided tests (TOST)."""
        if not margin or not self.testable:
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.estimate) < margin else 1.0
        lower = st.t.sf((self.estimate + margin) / self.se, self.df)
        upper = st.t.cdf((self.estimate - margin) / self.se, self.df)
        return float(max(lower, upper))

    def exceeds(self, margin: float | None) -> float:
        """Two-sided p of |effect| > margin (a minimum-effect test): below alpha exactly when
        the 1 - alpha interval lies outside +/- margin. margin 0: the test of 0."""
        margin = margin or 0.0
        if not self.testable:
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.estimate) > margin else 1.0
        above = st.t.sf((self.estimate - margin) / self.se, self.df)
        below = st.t.cdf((self.estimate + margin) / self.se, self.df)
        return float(min(1.0, 2 * min(above, below)))


def untestable(method: str, n: int = 0) -> TTest:
    return TTest(math.nan, math.nan, 0.0, n, math.nan, False, method)


def per_seed_t(d: np.ndarray, what: str = "differences", of: int = 0) -> TTest:
    """One-sample t on per-seed effects `d` (statsmodels' DescrStatsW); `of`: the seeds
    that ran, when only some finished every level involved."""
    from statsmodels.stats.weightstats import DescrStatsW

    d = np.asarray(d, dtype=float)
    n = len(d)
    seeds = f"{n} of {of} seeds, those that finished every level" if of > n else f"{n} seeds"
    method = f"one-sample t on per-seed {what} ({seeds})"
    if n < 2:
        return untestable(method, n)
    if np.all(np.abs(d - d[0]) <= RESOLUTION * max(1.0, np.abs(d).max())):
        d = np.full(n, 0.0 if abs(d[0]) <= RESOLUTION else d[0])  # no seed variance
        return TTest(float(d[0]), 0.0, n - 1.0, n, 0.0, True, method)
    ds = DescrStatsW(d)
    return TTest(float(ds.mean), float(ds.std_mean), n - 1.0, n, float(d.std(ddof=1)), True, method)


def welch_t(samples: list[np.ndarray], weights: np.ndarray, what: str = "") -> TTest:
    """sum_l w_l mean_l over independent samples, Welch-Satterthwaite degrees of freedom."""
    used = [(np.asarray(s, dtype=float), w) for s, w in zip(samples, weights, strict=True) if w]
    n = min((len(s) for s, _ in used), default=0)
    method = "Welch t" + (f" on {what}" if what else "") + " (seeds not shared)"
    if n < 2:
        return untestable(method, n)
    est = sum(w * s.mean() for s, w in used)
    parts = np.array([w**2 * s.var(ddof=1) / len(s) for s, w in used])
    pooled = math.sqrt(np.mean([s.var(ddof=1) for s, _ in used]))
    if parts.sum() == 0:
        return TTest(float(est), 0.0, float(n - 1), n, 0.0, False, method)
    df = parts.sum() ** 2 / sum(v**2 / (len(s) - 1) for v, (s, _) in zip(parts, used, strict=True))
    return TTest(float(est), float(math.sqrt(parts.sum())), float(df), n, pooled, False, method)


class Table:
    """Seed x level numbers as one array, columns by label: the tests index it thousands of
    times in a simulation, which pandas made slow. nan = the run did not finish."""

    def __init__(self, frame: pd.DataFrame | Table, ran=None, failed=None):
        if isinstance(frame, Table):
            self.__dict__.update(frame.__dict__)
            return
        self.x = frame.to_numpy(float)
        self.col = {c: i for i, c in enumerate(frame.columns)}
        self.ran = None if ran is None else ran.to_numpy(bool)
        self.failed = None if failed is None else failed.to_numpy(bool)

    def mask(self, array: np.ndarray, labels) -> np.ndarray:
        return array[:, [self.col[c] for c in labels]]

    def columns(self, labels) -> np.ndarray:
        return self.x[:, [self.col[c] for c in labels]]

    def complete(self, labels) -> np.ndarray:
        """The rows (seeds) on which every level in `labels` finished."""
        x = self.columns(labels)
        return x[~np.isnan(x).any(axis=1)]

    def finished(self, label) -> np.ndarray:
        x = self.x[:, self.col[label]]
        return x[~np.isnan(x)]


def complete_seeds(values, columns) -> np.ndarray:
    """The seeds on which every level in `columns` finished (rows of their values)."""
    return Table(values).complete(list(columns))


def linear(values, weights: dict[str, float], what: str = "differences") -> TTest:
    """The combination sum_l w_l y_l of the levels (columns of `values`, a DataFrame or
    Table, rows = seeds, nan = did not finish): per seed on the seeds every weighted level
    finished when there are at least two, else Welch on each level's finished runs."""
    table = Table(values)
    cols = [c for c, w in weights.items() if w]
    w = np.array([weights[c] for c in cols])
    x = table.columns(cols)
    done = ~np.isnan(x)
    full = x[done.all(axis=1)]
    if len(full) >= 2:
        return per_seed_t(full @ w, what, int(done.any(axis=1).sum()))
    return welch_t([table.finished(c) for c in cols], w, what)


def identical(values, ran, columns) -> bool:
    """Every level in `columns` gives exactly the same number on every seed, and finished on
    the same seeds (a pair where one side diverged is never identical): at least two seeds."""
    table = Table(values, ran if isinstance(ran, pd.DataFrame) else None)
    cols = [table.col[c] for c in columns]
    x = table.x[:, cols]
    done = ~np.isnan(x)
    both = table.ran[:, cols].all(axis=1) if table.ran is not None else done.any(axis=1)
    if both.sum() < 2 or not (done[both] == done[both][:, :1]).all():
        return False
    full = x[both & done.all(axis=1)]
    if len(full) < 2:
        return False
    return bool(np.all(np.abs(full - full[:, :1]) <= RESOLUTION * np.maximum(1.0, np.abs(full))))


# -- several degrees of freedom ----------------------------------------------------------
@dataclass(frozen=True)
class Joint:
    """A test of several contrasts at once: p, the test's name, and the family of
    one-degree-of-freedom tests (each a TTest) whose Bonferroni-adjusted intervals are
    simultaneous (so an interval picked after looking, best minus worst, keeps its level)."""

    p: float
    method: str
    family: list[TTest]


# Hotelling's T^2 needs its denominator degrees of freedom (seeds minus contrasts) to match
# Bonferroni over the pairs: in a simulation of 3 and 5 levels with one level shifted or a
# linear spread (equal noise, 1,500 studies per cell) it caught up at 12-20 seeds for 3
# levels and at about 20 for 5, and was far weaker below (5 levels, 5 seeds: 9% vs 33%)
HOTELLING_MIN_DF = 15


def use_hotelling(n: int, dims: int) -> bool:
    """Whether n seeds test `dims` contrasts with Hotelling's T^2 (else Bonferroni): a
    choice from the design alone, so either keeps its level."""
    return n - dims >= HOTELLING_MIN_DF


def joint(
    values: pd.DataFrame,
    basis: list[dict[str, float]],
    family: list[dict[str, float]],
    alpha: float,
    what: str,
) -> Joint:
    """Are all contrasts of `basis` zero? (They span the question; `family` holds the
    contrasts a reader names, e.g. every pair of levels.) Per seed: Hotelling's T^2 or
    Bonferroni over the family, whichever the design favours; without shared seeds:
    Bonferroni over Welch tests of the family."""
    from statsmodels.stats.multivariate import test_mvmean

    values = Table(values)
    tests = [linear(values, w, what) for w in family]
    cols = sorted({c for w in basis for c, x in w.items() if x})
    full = values.complete(cols)
    dims, m = len(basis), len(family)
    ps = [t.p() for t in tests]
    bonferroni = min(1.0, m * min(ps)) if ps and all(math.isfinite(p) for p in ps) else math.nan
    paired = len(full) >= 2
    if paired and dims > 1 and use_hotelling(len(full), dims):
        index = {c: i for i, c in enumerate(cols)}
        weights = np.zeros((len(cols), dims))
        for j, w in enumerate(basis):
            for c, x in w.items():
                weights[index[c], j] = x
        d = full @ weights
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = test_mvmean(d, np.zeros(dims))
        p = float(res.pvalue) if np.isfinite(res.pvalue) else bonferroni
        return Joint(p, f"Hotelling's T² on per-seed {what} ({dims} df, {len(full)} seeds)", tests)
    if m == 1:
        return Joint(ps[0], tests[0].method, tests)
    method = f"Bonferroni over {m} " + (
        f"per-seed t-tests of {what} ({len(full)} seeds)" if paired else f"Welch t-tests of {what}"
    )
    return Joint(bonferroni, method, tests)


def welch_anova(values, columns) -> float:
    """Welch's ANOVA (anova_oneway, use_var="unequal") over the levels' finished runs."""
    from statsmodels.stats.oneway import anova_oneway

    groups = [Table(values).finished(c) for c in columns]
    if len(groups) < 2 or any(len(g) < 2 or np.ptp(g) == 0 for g in groups):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(anova_oneway(groups, use_var="unequal").pvalue)


def fisher(failed_a: int, ran_a: int, failed_b: int, ran_b: int) -> float:
    """Fisher's exact test of two failure rates (scipy); nan when neither side failed."""
    if failed_a + failed_b == 0 or ran_a == 0 or ran_b == 0:
        return math.nan
    table = [[failed_a, ran_a - failed_a], [failed_b, ran_b - failed_b]]
    return float(st.fisher_exact(table).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values; nan entries stay nan, outside the family. The step-down
    formula of statsmodels' `multipletests(method="holm")` (tests check they agree), written
    out because that function runs gc.collect() on every call, which made the simulations
    slow."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
        out[order] = adjusted
    return [float(x) for x in out]


def holm_share(pvalues: list[float], alpha: float) -> list[float]:
    """Per test, the share of alpha Holm's step-down gives it: 1 / the number of the
    family's tests not yet rejected when it is tested (for a test not rejected, the level a
    power analysis for it must use)."""
    adjusted = holm(pvalues)
    finite = [p for p in pvalues if math.isfinite(p)]
    rejected = sum(1 for a in adjusted if math.isfinite(a) and a < alpha)
    order = sorted(
        range(len(pvalues)), key=lambda i: pvalues[i] if math.isfinite(pvalues[i]) else 2
    )
    out = [1.0 / max(1, len(finite) - rejected)] * len(pvalues)
    for rank, i in enumerate(order[:rejected]):
        out[i] = 1.0 / (len(finite) - rank)
    return out


def weighted_holm(pvalues: list[float], weights: list[float], alpha: float):
    """Holm's weighted step-down (Holm 1979): test i starts with the share weights[i] of
    alpha (weights add up to 1) and a rejected test passes its share on to the others.
    Returns the adjusted p-values and each test's share of alpha (as holm_share). nan
    p-values drop out and leave their weight to the others."""
    idx = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    adjusted, share = [math.nan] * len(pvalues), [1.0] * len(pvalues)
    if not idx:
        return adjusted, share
    w = {i: weights[i] / sum(weights[j] for j in idx) for i in idx}
    remaining, running = list(idx), 0.0
    while remaining:
        total = sum(w[i] for i in remaining)
        i = min(remaining, key=lambda j: pvalues[j] / w[j])
        running = max(running, min(1.0, pvalues[i] * total / w[i]))
        adjusted[i], share[i] = running, w[i] / total
        remaining.remove(i)
    still = [i for i in idx if adjusted[i] >= alpha]  # not rejected: they face these shares
    for i in still:
        share[i] = w[i] / sum(w[j] for j in still)
    return adjusted, share
