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
# futility stops a question when the final look would decide it with less than this
# conditional power under the current trend (see conditional_power). Chosen on a pilot
# simulation (300 studies per scenario, seed 1): 0.2 / 0.25 / 0.3 gave 92.7 / 92.2 / 91.8%
# agreement with the fixed design at 59 / 58 / 57% of its runs; the reported simulation
# (docs/report.md) then uses fresh seeds
FUTILITY_POWER = 0.25


@dataclass(frozen=True)
class SeedPlan:
    """`seeds: {initial, max, step}` of a study file."""

    initial: int
    max: int
    step: int
    futility: bool = True
    spending: str = "obrien_fleming"

    def __post_init__(self) -> None:
        if not 2 <= self.initial <= self.max:
            raise ValueError(
                f"seeds.initial={self.initial} must be >= 2 and <= seeds.max="
                f"{self.max} (a seed-level test needs two seeds)"
            )
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


def nominal_levels(
    looks: list[int], alpha: float = 0.05, spending: str = "obrien_fleming"
) -> list[float]:
    """Two-sided nominal significance level of each look (a p-value below it decides);
    see _nominal_levels. Cached: the same plan gives the same levels."""
    return list(_levels(tuple(looks), alpha, spending))


def _nominal_levels(
    looks: list[int], alpha: float = 0.05, spending: str = "obrien_fleming"
) -> list[float]:
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
    mvn = stats.multivariate_normal(
        mean=np.zeros(len(bounds)),
        cov=cov,
        allow_singular=True,
        seed=0,
        maxpts=50_000 * len(bounds),
        abseps=1e-6,
        releps=0,
    )
    return float(mvn.cdf(bounds, lower_limit=-bounds))


def conditional_power(
    estimate: float,
    observed_sd: float,
    n: int,
    n_max: int,
    level: float,
    sesoi: float | None = None,
    draws: int = 4000,
) -> float:
    """The probability that the final look (n_max seeds, nominal `level`) decides a question,
    given the n seeds seen so far, under the current trend: the seeds still to come are drawn
    with the observed estimate as their mean and the observed SD of one seed's difference
    (stochastic curtailment, Jennison & Turnbull 2000, ch. 10). "Decides" is either verdict a
    fixed design can reach: the paired t-test significant at `level`, or with a sesoi, TOST
    equivalent at `level`. Monte Carlo over the remaining seeds with a fixed seed (the same
    inputs give the same answer), because the final SD varies too: a closed form that fixes
    it at the observed SD is off by up to 0.09 near the 0.2 threshold with 5 of 10 seeds."""
    if not (math.isfinite(estimate) and math.isfinite(observed_sd) and observed_sd > 0):
        return 1.0
    if n >= n_max:
        return 0.0
    new = np.random.default_rng(0).normal(estimate, observed_sd, size=(draws, n_max - n))
    # the n seen seeds enter through their sum and sum of squared deviations
    total = n * estimate + new.sum(axis=1)
    mean = total / n_max
    new_mean = new.mean(axis=1)
    ss = (
        (n - 1) * observed_sd**2
        + ((new - new_mean[:, None]) ** 2).sum(axis=1)
        + n * (n_max - n) / n_max * (estimate - new_mean) ** 2
    )
    se = np.sqrt(ss / (n_max - 1) / n_max)
    df = n_max - 1
    decided = 2 * stats.t.sf(np.abs(mean) / se, df) < level
    if sesoi:
        tost = np.maximum(stats.t.sf((mean + sesoi) / se, df), stats.t.cdf((mean - sesoi) / se, df))
        decided |= tost < level
    return float(decided.mean())


def futility_stop(
    plan: SeedPlan,
    look: int,
    estimate: float,
    sd: float,
    n: int,
    sesoi: float | None,
    final_level: float,
) -> float | None:
    """The final look's conditional power if an inconclusive question stops for futility at
    look `look` (0-based), else None: it stops when the plan asks for futility, the look is
    not the last and that power is below FUTILITY_POWER. Futility is non-binding: stopping
    early never rejects, so it cannot raise the false-claim rate; it only gives up power,
    which the simulation measures."""
    if not plan.futility or look >= len(plan.looks) - 1:
        return None
    power = conditional_power(estimate, sd, n, plan.max, final_level, sesoi)
    return power if power < FUTILITY_POWER else None


# -- the decision after a round ----------------------------------------------------------
DECIDED = (
    "supported",
    "contradicted",
    "differs",
    "depends",
    "no relevant effect",
    "identical by construction",
    "not testable",
)


def question_experiments(doc: dict, group: str, contrast: str) -> list[str]:
    """The experiments a verdict row compares: a contrast's levels (labels of its sides),
    every experiment of the group for the group row and factorial terms."""
    spec = doc["groups"][group]
    exps = list(spec["experiments"])
    for c in spec.get("contrasts") or []:
        if c["name"] == contrast:
            by_label = {
                e["label"]: e["experiment"] for e in doc["experiments"] if e["experiment"] in exps
            }
            labels = [c["a"]] if isinstance(c["a"], str) else list(c["a"])
            labels += [c["b"]] if isinstance(c["b"], str) else list(c["b"])
            return [by_label[lb] for lb in labels if lb in by_label]
    return exps


def _one_seed_sd(row: dict) -> float:
    """The SD of one seed's effect behind a verdict row (the per-seed difference, slope or
    contrast the row tests: its `effect_sd`)."""
    try:
        sd = float(row.get("effect_sd"))
    except (TypeError, ValueError):
        return math.nan
    return sd if math.isfinite(sd) and sd > 0 else math.nan


def _final_level(row: dict, level: float, final: float) -> float:
    """The level the row's test would face at the last look: the last look's nominal level
    times the row's Holm share of alpha (`alpha_used` / the level it was tested at)."""
    try:
        share = float(row.get("alpha_used")) / level
    except (TypeError, ValueError, ZeroDivisionError):
        share = 1.0
    return final * (share if math.isfinite(share) and 0 < share <= 1 else 1.0)


def _margin(row: dict, sesoi: float | None) -> float | None:
    """The sesoi in the row's own units (`margin`: per doubling for a trend's slope, the
    difference of differences for an interaction), else the study's."""
    try:
        margin = float(row.get("margin"))
    except (TypeError, ValueError):
        return sesoi
    return margin if math.isfinite(margin) and margin > 0 else sesoi


def decide_round(
    summary,
    doc: dict,
    plan: SeedPlan,
    round_: int,
    previous: dict | None = None,
    alpha: float | None = None,
) -> dict:
    """The decision after round `round_` (1-based) of a sequential study.

    `summary` holds the runs finished so far (one row per experiment x seed, as summary.csv);
    `previous` is the decision after the round before (None for round 1): questions it
    decided keep their verdict (a group-sequential test stops at the look that decides).
    Every question still open is analysed at this look's nominal level
    (nominal_levels(plan.looks, alpha, plan.spending)[round_ - 1]); an `inconclusive` one
    gives its experiments the next look's seeds unless they are at `max`, or `futility`
    finds that even `max` seeds could not detect a sesoi-sized effect at the observed SD.
    Returns the round file's content (rounds/round{k}.yaml)."""
    from hpstudy import analysis

    alpha = analysis.ALPHA if alpha is None else alpha
    looks = plan.looks
    levels = nominal_levels(looks, alpha, plan.spending)
    k = min(round_, len(looks))
    level = levels[k - 1]
    seeds_now = _seeds_given(summary, doc, previous, plan)
    result = analysis.analyse_study(summary, doc, alpha=level, alpha_final=levels[-1])
    rows = [analysis.json_safe(r) for r in result["verdicts"].to_dict(orient="records")]
    kept = {
        (q["group"], q["contrast"]): q
        for q in (previous or {}).get("questions", [])
        if q["status"] != "open"
    }
    questions, wants = [], {}
    for row in rows:
        key = (row["group"], row["contrast"])
        if key in kept:
            questions.append(kept[key])
            continue
        exps = question_experiments(doc, *key)
        q = {
            "group": row["group"],
            "contrast": row["contrast"],
            "verdict": row["verdict"],
            "round": round_,
            "seeds": max([seeds_now.get(e, 0) for e in exps] or [0]),
            "level": level,
            "status": "decided",
            "experiments": exps,
            "row": row,
        }
        if row["verdict"] == "inconclusive":
            q.update(_after_inconclusive(row, q["seeds"], plan, k, levels, doc.get("sesoi")))
            if q["status"] == "open":
                for e in exps:
                    wants.setdefault(e, []).append(q)
        questions.append(q)
    added, seeds_next = _seeds_added(wants, seeds_now, looks[k] if k < len(looks) else None)
    return analysis.json_safe(
        {
            "round": round_,
            "look": k,
            "looks": looks,
            "spending": plan.spending,
            "alpha": alpha,
            "level": level,
            "levels": levels,
            "seeds": seeds_now,
            "seeds_next": seeds_next,
            "added": added,
            "questions": questions,
            "runs": sum(seeds_now.values()),
            "runs_at_max": plan.max * len(seeds_now),
            "done": not added,
        }
    )


def _after_inconclusive(
    row: dict, n: int, plan: SeedPlan, k: int, levels: tuple[float, ...], sesoi: float | None
) -> dict:
    """The status of a question inconclusive at look `k` (1-based) with `n` seeds, and why:
    `at max` (no seeds left to add), `futile` (even `max` seeds would hardly decide it) or
    `open` (its experiments get the next look's seeds)."""
    looks, level = plan.looks, levels[k - 1]
    if n >= plan.max or k >= len(looks):
        return {"status": "at max", "why": f"inconclusive with {n} seeds, the most the plan allows"}
    sd = _one_seed_sd(row)
    if math.isfinite(sd):
        estimate = float(row.get("estimate") or 0.0)
        final = _final_level(row, level, levels[-1])
        cp = futility_stop(plan, k - 1, estimate, sd, n, _margin(row, sesoi), final)
        if cp is not None:
            return {
                "status": "futile",
                "why": (
                    f"futility: at the observed estimate and seed SD {sd:.3g}, the final look "
                    f"({plan.max} seeds, level {levels[-1]:.3g}) would decide this question "
                    f"with probability {cp:.0%} (< {FUTILITY_POWER:.0%})"
                ),
            }
    return {
        "status": "open",
        "why": f"inconclusive at look {k} (level {level:.3g}): {looks[k]} seeds next",
    }


def _seeds_added(
    wants: dict[str, list[dict]], seeds_now: dict[str, int], nxt: int | None
) -> tuple[list[dict], dict[str, int]]:
    """The experiments open questions want `nxt` seeds for (with the questions that ask),
    and every experiment's seeds for the next round."""
    seeds_next, added = dict(seeds_now), []
    for e, qs in wants.items():
        if nxt is not None and seeds_next.get(e, 0) < nxt:
            because = [
                f"{q['group']} / {q['contrast']}: {q['verdict']} ({_evidence(q['row'])})"
                for q in qs
            ]
            added.append(
                {
                    "experiment": e,
                    "seeds_from": seeds_now.get(e, 0),
                    "seeds_to": nxt,
                    "because": because,
                }
            )
            seeds_next[e] = nxt
    return added, seeds_next


def _evidence(row: dict) -> str:
    est, p = row.get("estimate"), row.get("p_adj")
    parts = []
    if isinstance(est, int | float):
        parts.append(f"estimate {est:+.3g}")
    if isinstance(p, int | float):
        parts.append(f"p_adj {p:.3g}")
    return ", ".join(parts) or row.get("evidence", "")


def _seeds_given(summary, doc: dict, previous: dict | None, plan: SeedPlan) -> dict[str, int]:
    """Seeds each experiment has been given: the previous round's plan, else `initial`;
    runs present in summary count where they exceed it."""
    given = dict((previous or {}).get("seeds_next") or {})
    for e in doc["experiments"]:
        exp = e["experiment"]
        given.setdefault(exp, plan.initial)
        if summary is not None and len(summary) and "experiment" in summary:
            present = int((summary["experiment"] == exp).sum())
            given[exp] = max(given[exp], present)
    return given


def final_verdicts(decision: dict):
    """verdicts.csv of a sequential study: each question's row from the round that decided
    it (or the last one), with `round` and `seeds` columns."""
    import pandas as pd

    from hpstudy.analysis import VERDICT_COLUMNS

    rows = [{**q["row"], "round": q["round"], "seeds": q["seeds"]} for q in decision["questions"]]
    return pd.DataFrame(rows, columns=[*VERDICT_COLUMNS, "round", "seeds"])
