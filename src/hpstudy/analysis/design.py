"""The design recognised from a group: which runs it has (a seed x level table of the primary
metric, and which runs ran and failed), what kind of question its group row asks (a trend
over one numeric factor, a factorial grid, or "do these levels differ?"), and the weight
vectors over its levels that each question tests (hpstudy.analysis.inference).

A level is an experiment of the group, named by its label. Weights are dicts label ->
weight; their sum is 0, so a seed's own offset (its initial weights and data order, shared
by every level) cancels in the per-seed effect.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hpstudy.analysis.inference import Table
from hpstudy.metrics import LOWER_IS_BETTER

# experiments.tsv columns that are bookkeeping, not settings
BOOKKEEPING = {"experiment", "group", "label", "config_hash", "overrides", "shared_with"}


@dataclass
class Design:
    name: str
    kind: str  # "trend", "factorial" or "levels" (the group row asks: do they differ?)
    labels: list[str]
    experiments: dict[str, str]  # label -> experiment id
    values: pd.DataFrame  # seed x label, nan where the run did not finish (or is missing)
    ran: pd.DataFrame  # seed x label: a run exists (finished or not)
    failed: pd.DataFrame  # seed x label: a run exists and did not finish normally
    settings: dict[str, dict[str, Any]]  # label -> every resolved setting
    factors: list[str]  # the settings that vary within the group
    sign: int  # +1 when higher is better
    spec: dict[str, Any]
    x: dict[str, float] = field(default_factory=dict)  # trend: label -> x (log2 if declared)
    orders: dict[str, list] = field(default_factory=dict)  # factorial: factor -> its values

    @functools.cached_property
    def table(self) -> Table:
        """values, ran and failed as the arrays the tests index."""
        return Table(self.values, self.ran, self.failed)

    @property
    def expect(self) -> dict[str, Any]:
        return self.spec.get("expect") or {}

    @property
    def group_expect(self) -> str:
        return "none" if self.expect.get("none") else self.expect.get("trend", "")

    def value_of(self, label: str, factor: str) -> Any:
        return self.settings[label].get(factor)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@dataclass
class Runs:
    """The study's runs as seed x experiment arrays: the metric (nan where a run did not
    finish), which runs exist and which did not finish normally; `col`: experiment ->
    column."""

    seeds: np.ndarray
    col: dict[str, int]
    values: np.ndarray
    ran: np.ndarray
    failed: np.ndarray

    def frame(self, array: np.ndarray, experiments: list[str], names=None) -> pd.DataFrame:
        """Seed x experiment columns of one of the arrays (absent experiments: no runs)."""
        fill = np.nan if array.dtype.kind == "f" else False
        padded = np.column_stack([array, np.full(len(self.seeds), fill, dtype=array.dtype)])
        index = [self.col.get(e, -1) for e in experiments]
        return pd.DataFrame(padded[:, index], index=self.seeds, columns=names or experiments)


def run_table(summary: pd.DataFrame, metric: str) -> Runs:
    """One row per experiment x seed (summary.csv) as seed x experiment arrays."""
    frame = summary.drop_duplicates(["experiment", "seed"])
    seeds, row = np.unique(frame["seed"].to_numpy(), return_inverse=True)
    experiments = list(dict.fromkeys(frame["experiment"]))
    col = {e: i for i, e in enumerate(experiments)}
    column = np.array([col[e] for e in frame["experiment"]], dtype=int)
    ok = (frame["status"] == "ok").to_numpy()
    y = (
        pd.to_numeric(frame[metric], errors="coerce").to_numpy(float)
        if metric in frame
        else np.full(len(frame), np.nan)
    )
    shape = (len(seeds), len(experiments))
    values, ran, failed = np.full(shape, np.nan), np.zeros(shape, bool), np.zeros(shape, bool)
    values[row, column] = np.where(ok, y, np.nan)
    ran[row, column] = True
    failed[row, column] = ~ok
    return Runs(seeds, col, values, ran, failed)


def recognise(
    name: str,
    spec: dict[str, Any],
    runs: Runs,
    configs: dict[str, dict[str, Any]],
    metric: str,
) -> Design:
    """The design of group `name` (`spec`: study.json's group) from the study's runs
    (run_table) and the resolved settings of every experiment."""
    experiments = list(spec["experiments"])
    labels = [configs[e]["label"] for e in experiments]
    by_label = dict(zip(labels, experiments, strict=True))
    ran = runs.frame(runs.ran, experiments, labels)
    rows = ran.any(axis=1).to_numpy()
    ran = ran.loc[rows]
    values = runs.frame(runs.values, experiments, labels).loc[rows]
    failed = runs.frame(runs.failed, experiments, labels).loc[rows]
    settings = {
        lb: {k: v for k, v in configs[e].items() if k not in BOOKKEEPING}
        for lb, e in by_label.items()
    }
    factors = [
        f for f in spec.get("factors", []) if len({repr(settings[lb].get(f)) for lb in labels}) > 1
    ]
    design = Design(
        name=name,
        kind="levels",
        labels=labels,
        experiments=by_label,
        values=values,
        ran=ran,
        failed=failed,
        settings=settings,
        factors=factors,
        sign=1 if higher_is_better(metric) else -1,
        spec=spec,
    )
    expect = design.expect
    if spec.get("kind", "grid") == "grid" and len(factors) >= 2:
        design.kind = "factorial"
        design.orders = {
            f: list(dict.fromkeys(settings[lb].get(f) for lb in labels)) for f in factors
        }
    elif "trend" in expect and len(factors) == 1:
        design.kind = "trend"
        f = factors[0]
        log2 = expect.get("scale") == "log2"
        design.x = {
            lb: math.log2(v) if log2 else float(v)
            for lb, v in ((lb, settings[lb][f]) for lb in labels)
        }
    return design


# -- weights ------------------------------------------------------------------------------
def pair(a: str, b: str) -> dict[str, float]:
    return {a: 1.0, b: -1.0}


def sides(a: list[str], b: list[str]) -> dict[str, float]:
    """mean(a) - mean(b), per seed."""
    w = {lb: 1.0 / len(a) for lb in a}
    w.update({lb: -1.0 / len(b) for lb in b})
    return w


def slope(x: dict[str, float]) -> dict[str, float]:
    """The least-squares slope of the levels' values on x (equal weight per level)."""
    xs = np.array(list(x.values()))
    c = xs - xs.mean()
    return dict(zip(x, c / (c**2).sum(), strict=True))


def curvature(x: dict[str, float]) -> list[dict[str, float]]:
    """Orthonormal polynomial contrasts of degree 2 .. k-1 over the levels' x: together they
    span every deviation of the level means from a straight line (lack of fit)."""
    xs = np.array(list(x.values()))
    k = len(xs)
    if k < 3:
        return []
    z = (xs - xs.mean()) / (xs.std() or 1.0)
    q, _ = np.linalg.qr(np.vander(z, k, increasing=True))
    return [dict(zip(x, q[:, j], strict=True)) for j in range(2, k)]


def all_pairs(labels: list) -> list[tuple]:
    """Every pair (earlier, later) of a list of levels or values, in order."""
    return list(itertools.combinations(labels, 2))


all_pairs_values = all_pairs


def interaction_of(a: list[str], b: list[str], settings: dict[str, dict[str, Any]]):
    """A contrast of two pairs of levels that is the interaction of a 2x2 design, recognised
    from the settings: the four levels split into two pairs by each varying setting in
    exactly two ways (the two factors), and the contrast's sides are the third split (the
    diagonals). Returns (settings of the first factor, of the second) or None."""
    if len(a) != 2 or len(b) != 2:
        return None
    four = [*a, *b]
    splits: dict[frozenset, list[str]] = {}
    keys = set().union(*(settings[lb] for lb in four))
    for key in sorted(keys):
        vals = [repr(settings[lb].get(key)) for lb in four]
        if len(set(vals)) == 1:
            continue
        if sorted(vals.count(v) for v in set(vals)) != [2, 2]:
            return None
        split = frozenset(
            frozenset(lb for lb, v in zip(four, vals, strict=True) if v == x) for x in set(vals)
        )
        splits.setdefault(split, []).append(key)
    diagonal = frozenset([frozenset(a), frozenset(b)])
    if len(splits) != 2 or diagonal in splits:
        return None
    first, second = splits.values()
    return first, second


# -- factorial grids ----------------------------------------------------------------------
def cells(design: Design, fixed: dict[str, Any]) -> list[str]:
    """The levels whose settings match `fixed` (factor -> value)."""
    return [
        lb
        for lb in design.labels
        if all(repr(design.value_of(lb, f)) == repr(v) for f, v in fixed.items())
    ]


def marginal(design: Design, fixed: dict[str, Any]) -> dict[str, float]:
    """Weights of the mean over the cells matching `fixed` (averaged over the other factors)."""
    match = cells(design, fixed)
    return {lb: 1.0 / len(match) for lb in match}


def combine(*terms: tuple[float, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for coef, w in terms:
        for lb, x in w.items():
            out[lb] = out.get(lb, 0.0) + coef * x
    return {lb: x for lb, x in out.items() if abs(x) > 1e-15}


def main_pair(design: Design, f: str, hi: Any, lo: Any) -> dict[str, float]:
    """Marginal mean at f = hi minus at f = lo."""
    return combine((1.0, marginal(design, {f: hi})), (-1.0, marginal(design, {f: lo})))


def simple_pair(design: Design, f: str, hi: Any, lo: Any, at: dict[str, Any]) -> dict[str, float]:
    """The effect of f (hi minus lo) at the other factors' values `at`."""
    return combine((1.0, marginal(design, {**at, f: hi})), (-1.0, marginal(design, {**at, f: lo})))


def dod(design: Design, f: str, g: str, f_pair: tuple, g_pair: tuple) -> dict[str, float]:
    """Difference of differences: the effect of f (f_pair[0] minus f_pair[1]) at g =
    g_pair[0] minus at g = g_pair[1], averaged over the other factors."""
    return combine(
        (1.0, simple_pair(design, f, *f_pair, {g: g_pair[0]})),
        (-1.0, simple_pair(design, f, *f_pair, {g: g_pair[1]})),
    )
