"""Seeds a question would need: 80% power against a sesoi-sized effect, solved by
statsmodels.stats.power at the level the answer actually uses - alpha (a sequential study's
last look, not the current one) times the row's Holm share (1 / the family's tests not yet
rejected) and over the Bonferroni family of a selected pair (best minus worst) - and at the
SD of the statistic the row tests: one seed's effect (TTestPower, paired) or one run
(TTestIndPower, Welch)."""

from __future__ import annotations

import math
import warnings

from scipy import stats as st

from hpstudy.analysis.rule import POWER


def seeds_needed(sd: float, margin: float, level: float, paired: bool) -> float:
    """Seeds per level for `POWER` against an effect of `margin` at two-sided `level`."""
    if not margin or not (sd > 0) or not (0 < level < 1):
        return math.nan
    from statsmodels.stats import power

    solver = power.TTestPower() if paired else power.TTestIndPower()
    effect = margin / sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n = float(solver.solve_power(effect_size=effect, alpha=level, power=POWER))
        except Exception:  # noqa: BLE001 - the solver gives up on extreme effect sizes
            n = math.nan
    if not math.isfinite(n):  # normal approximation where the solver gives up
        z = st.norm.ppf(1 - level / 2) + st.norm.ppf(POWER)
        n = (z / effect) ** 2 * (1 if paired else 2) + 1
    return float(max(2, math.ceil(n - 1e-9)))


def level_used(alpha_final: float, share: float, family: int) -> float:
    """The level a row's test faces when it is decided: the final alpha, times the row's
    Holm share, over the Bonferroni family of its estimate."""
    return alpha_final * share / max(1, family)
