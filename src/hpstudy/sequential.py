"""Sequential seeds: a declared group-sequential design over the rounds of a study.

A study with `seeds: {initial: 3, max: 10, step: 2}` looks at its data after every round
(3, 5, 7, 9, 10 seeds). Testing at alpha at every look would inflate false positives (with
five looks, a two-sided t-test at 0.05 each time rejects a true null about 14% of the time).
The design spends alpha over the planned looks instead (Lan & DeMets 1983): the cumulative
type-I error allowed by look k is

    O'Brien-Fleming type:  a(t) = 2 - 2 * Phi(z_{1 - alpha/2} / sqrt(t))
    Pocock type:           a(t) = alpha * ln(1 + (e - 1) * t)

with t = seeds at look k / max seeds (the information fraction). Each look's nominal level
follows from the joint normal law of the look statistics (corr(Z_i, Z_j) = sqrt(t_i / t_j),
Jennison & Turnbull 2000, ch. 7), so that the probability of crossing a boundary at any look
under the null is exactly alpha for z statistics. hpstudy compares each look's p-value (the
same test a fixed design would run) with that nominal level.

O'Brien-Fleming is the default: it spends almost nothing early (round 1 decides only clear
effects) and keeps the final look's level close to alpha, so a study that runs to `max` seeds
reaches nearly the verdict a fixed design with `max` seeds would. Pocock spends evenly and stops
earlier on moderate effects at the price of a stricter final look. A Bonferroni split
(alpha / number of looks) is also available: valid under any dependence, but the most
conservative of the three.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

SPENDING = ("obrien_fleming", "pocock", "bonferroni")


@dataclass(frozen=True)
class SeedPlan:
    """`seeds: {initial, max, step}` of a study file."""

    initial: int
    max: int
    step: int
    futility: bool = False
    spending: str = "obrien_fleming"

    def __post_init__(self) -> None:
        if not 2 <= self.initial <= self.max:
            raise ValueError(f"seeds.initial={self.initial} must be >= 2 and <= seeds.max="
                             f"{self.max} (a seed-level test needs two seeds)")
        if self.step < 1:
            raise ValueError(f"seeds.step={self.step} must be >= 1")
        if self.spending not in SPENDING:
            raise ValueError(f"seeds.spending={self.spending!r}: expected one of {SPENDING}")

    @property
    def looks(self) -> list[int]:
        """Seeds per experiment at each planned look: initial, +step, ..., capped at max."""
        out = list(range(self.initial, self.max, self.step))
        return out + [self.max]

    def seeds_at(self, round_: int) -> int:
        """Seeds an experiment has after round `round_` (1-based) if it keeps going."""
        return self.looks[min(round_, len(self.looks)) - 1]


def spent(t: np.ndarray, alpha: float, spending: str) -> np.ndarray:
    """Cumulative two-sided alpha spent by information fraction t."""
    t = np.asarray(t, dtype=float)
    if spending == "obrien_fleming":
        return 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / np.sqrt(t))
    if spending == "pocock":
        return alpha * np.log(1 + (math.e - 1) * t)
    raise ValueError(spending)


@functools.lru_cache(maxsize=64)
def _levels(looks: tuple[int, ...], alpha: float, spending: str) -> tuple[float, ...]:
    return tuple(_nominal_levels(list(looks), alpha, spending))


def nominal_levels(looks: list[int], alpha: float = 0.05,
                   spending: str = "obrien_fleming") -> list[float]:
    """Two-sided nominal significance level of each look (a p-value below it decides);
    see _nominal_levels. Cached: the same plan gives the same levels."""
    return list(_levels(tuple(looks), alpha, spending))


def _nominal_levels(looks: list[int], alpha: float = 0.05,
                   spending: str = "obrien_fleming") -> list[float]:
    """Two-sided nominal significance level of each look (a p-value below it decides).

    Boundaries c_k solve P(|Z_j| < c_j for j < k, |Z_k| >= c_k) = a(t_k) - a(t_{k-1}) under
    the null, Z being the look statistics of a Brownian motion observed at t_k."""
    if spending == "bonferroni":
        return [alpha / len(looks)] * len(looks)
    t = np.asarray(looks, dtype=float) / looks[-1]
    increments = np.diff(np.concatenate([[0.0], spent(t, alpha, spending)]))
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    bounds: list[float] = []
    for k in range(len(t)):
        if k == 0:
            bounds.append(float(stats.norm.ppf(1 - increments[0] / 2)))
            continue
        sub = cov[: k + 1, : k + 1]
        prior = np.array(bounds)
        stay = _box(cov[:k, :k], prior)  # P(no crossing before look k)

        def excess(c: float, sub=sub, prior=prior, stay=stay, k=k) -> float:
            inside = _box(sub, np.append(prior, c))
            return (stay - inside) - increments[k]

        bounds.append(float(optimize.brentq(excess, 1.0, 8.0, xtol=1e-4)))
    return [float(2 * stats.norm.sf(c)) for c in bounds]


def _box(cov: np.ndarray, bounds: np.ndarray) -> float:
    """P(|Z_j| < bounds_j for all j), Z ~ N(0, cov)."""
    if len(bounds) == 1:
        return float(1 - 2 * stats.norm.sf(bounds[0]))
    mvn = stats.multivariate_normal(mean=np.zeros(len(bounds)), cov=cov, allow_singular=True,
                                    seed=0, maxpts=50_000 * len(bounds), abseps=1e-6,
                                    releps=0)
    return float(mvn.cdf(bounds, lower_limit=-bounds))


def could_still_decide(observed_sd: float, sesoi: float, n_max: int, level: float,
                       power: float = 0.8) -> bool:
    """Futility: would `n_max` paired seeds detect a sesoi-sized effect at the final look's
    level with the given power, at the observed seed SD of the differences?"""
    from statsmodels.stats.power import TTestPower

    if not (observed_sd > 0 and sesoi > 0):
        return True
    achieved = TTestPower().power(effect_size=sesoi / observed_sd, nobs=n_max, alpha=level)
    return bool(achieved >= power)
