"""The simulation suite of docs/report.md (issue 20): studies with a known truth, analysed by
the real analyse_study, and the rate of every claim that the truth makes false.

A scenario is a study (groups as in a study file), the true mean and the run noise (SD) of
every level, the seeds, and per question row the verdicts (or other claims) that would be
false. Seed-level data: y = true mean + the seed's offset (SD `block_sd`, shared by every
level of a seed: its initial weights and data order) + run noise; a level may fail on some
seeds. Pseudo-claims besides the verdicts: `relevant` (the relevance column), `not monotone`
(a trend's qualifier), `CI excludes 0` (the interval of the row), `unqualified` (a claim that
a level is better without saying it failed on some seeds).

Every scenario has a power twin at twice the sesoi (or, for seeds_needed, at the seeds the
analysis suggests): the rate of the claim that is correct there. `python -m hpstudy.analyze
--simulate` runs all of them (>= 500 studies each) and prints the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SESOI = 0.01
BLOCK_SD = 0.05  # the seed's own offset, shared by every level
NOISE = 0.0075  # run noise per level: one seed's difference has SD ~ sesoi


@dataclass
class Scenario:
    name: str
    groups: dict[str, dict[str, Any]]  # name -> {kind, factors, levels: {label: settings}, ...}
    means: dict[tuple[str, str], float]  # (group, label) -> true mean
    false: dict[tuple[str, str], list[str]]  # (group, row) -> claims the truth makes false
    seeds: int
    correct: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # power twin
    noise: dict[tuple[str, str], float] = field(default_factory=dict)  # default NOISE
    fails: dict[tuple[str, str], int] = field(default_factory=dict)  # seeds that fail
    copies: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # same runs
    shared_seeds: bool = True
    note: str = ""


def study_doc(sc: Scenario) -> dict[str, Any]:
    doc = {"metric": "test_r2", "sesoi": SESOI, "groups": {}, "experiments": []}
    for name, g in sc.groups.items():
        exps = []
        for label, settings in g["levels"].items():
            exps.append(f"{name}-{label}")
            doc["experiments"].append(
                {
                    "experiment": f"{name}-{label}",
                    "group": name,
                    "label": label,
                    "config_hash": f"{name}-{label}",
                    **settings,
                }
            )
        doc["groups"][name] = {
            "question": "",
            "factors": g["factors"],
            "kind": g.get("kind", "grid"),
            "experiments": exps,
            "baseline": None,
            "expect": g.get("expect", {}),
            "contrasts": g.get("contrasts", []),
        }
    return doc


def draw(sc: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated summary.csv."""
    n = sc.seeds
    block = rng.normal(0, BLOCK_SD, n)
    cols: dict[str, list] = {k: [] for k in ("experiment", "group", "seed", "status", "test_r2")}
    drawn: dict[tuple[str, str], np.ndarray] = {}
    for i, ((g, label), mean) in enumerate(sc.means.items()):
        if (g, label) in sc.copies:
            y = drawn[sc.copies[(g, label)]].copy()
        else:
            offset = block if sc.shared_seeds else rng.normal(0, BLOCK_SD, n)
            y = mean + offset + rng.normal(0, sc.noise.get((g, label), NOISE), n)
        drawn[(g, label)] = y
        status = np.array(["ok"] * n, dtype=object)
        k = sc.fails.get((g, label), 0)
        if k:
            status[rng.choice(n, k, replace=False)] = "diverged"
        seeds = np.arange(n) + (0 if sc.shared_seeds else 1000 * i)
        cols["experiment"] += [f"{g}-{label}"] * n
        cols["group"] += [g] * n
        cols["seed"] += list(seeds)
        cols["status"] += list(status)
        cols["test_r2"] += list(np.where(status == "ok", y, np.nan))
    return pd.DataFrame(cols)


def claims(row: pd.Series) -> set[str]:
    """The claims a verdict row makes: its verdict and the pseudo-claims."""
    out = {row["verdict"]}
    if row.get("relevance") == "relevant":
        out.add("relevant")
    if str(row.get("qualifier") or "").startswith("not monotone"):
        out.add("not monotone")
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    if (lo > 0 or hi < 0) and row["verdict"] not in ("identical by construction",):
        out.add("CI excludes 0")
    better = row["verdict"] in ("supported", "contradicted", "differs")
    if better and "among finished" not in str(row.get("qualifier") or ""):
        out.add("unqualified")
    return out


def run(
    sc: Scenario,
    n_studies: int,
    seed: int = 0,
    rows: dict[tuple[str, str], list[str]] | None = None,
    analyse: Callable | None = None,
) -> dict[tuple[str, str], dict[str, float]]:
    """The rate of each claim in `rows` (default: the scenario's false claims) per row, over
    `n_studies` simulated studies. `analyse`: analyse_study (another version to compare)."""
    if analyse is None:
        from hpstudy.analysis import analyse_study

        def analyse(summary, doc):
            return analyse_study(summary, doc, describe=False)

    rows = rows or sc.false
    doc = study_doc(sc)
    rng = np.random.default_rng(seed)
    counts = {key: dict.fromkeys(kinds, 0) for key, kinds in rows.items()}
    for _ in range(n_studies):
        verdicts = analyse(draw(sc, rng), doc)["verdicts"].set_index(["group", "contrast"])
        for key, kinds in rows.items():
            made = claims(verdicts.loc[key])
            for kind in kinds:
                counts[key][kind] += kind in made
    return {key: {k: v / n_studies for k, v in c.items()} for key, c in counts.items()}


def mc_bound(rate: float, n: int, k: float = 2.0) -> float:
    """rate + k Monte Carlo standard errors of a rate estimated from n studies."""
    return rate + k * math.sqrt(rate * (1 - rate) / n)


# -- the suite and its table ------------------------------------------------------------
ONE_SIDED = {"supported", "contradicted", "relevant"}
ZERO = {"identical by construction", "unqualified"}
COLUMNS = [
    "supported",
    "contradicted",
    "differs",
    "depends",
    "no relevant effect",
    "relevant",
    "not monotone",
    "CI excludes 0",
    "identical by construction",
    "unqualified",
]


def nominal(kind: str, alpha: float = 0.05) -> float:
    """The most a false claim of this kind may happen: alpha / 2 for a claim of one
    direction, 0 for one false by construction, alpha otherwise."""
    return 0.0 if kind in ZERO else alpha / 2 if kind in ONE_SIDED else alpha


def suite(
    cases: list[tuple[str, Scenario, Scenario]],
    n_studies: int = 500,
    seed: int = 0,
    analyse: Callable | None = None,
    progress=None,
):
    """Every scenario of `cases` ((item, scenario, power twin), e.g. scenarios.scenarios())
    and its power twin: one record per scenario with, per claim kind, the highest
    false-claim rate over its rows, and the power of each correct claim."""
    out = []
    for k, (item, sc, twin) in enumerate(cases):
        false = run(sc, n_studies, seed + 2 * k, analyse=analyse) if sc.false else {}
        power = (
            run(twin, n_studies, seed + 2 * k + 1, twin.correct, analyse) if twin.correct else {}
        )
        worst = {}
        for rates in false.values():
            for kind, rate in rates.items():
                worst[kind] = max(worst.get(kind, 0.0), rate)
        out.append(
            {
                "item": item,
                "scenario": sc.name,
                "seeds": sc.seeds,
                "studies": n_studies,
                "false": worst,
                "false_by_row": {f"{g} / {c}": r for (g, c), r in false.items()},
                "power": {f"{g} / {c}": r for (g, c), r in power.items()},
                "within": all(
                    rate <= mc_bound(nominal(kind), n_studies) if nominal(kind) else rate == 0
                    for kind, rate in worst.items()
                ),
            }
        )
        if progress:
            progress(out[-1])
    return out


def table(records: list[dict], alpha: float = 0.05) -> str:
    """The suite as the markdown table of docs/report.md."""
    n = records[0]["studies"]
    lines = [
        f"{n} simulated studies per scenario and per power twin; a cell is the highest rate of "
        "that false claim over the scenario's rows, '·' where the truth does not make it "
        f"false. Bounds (nominal + 2 Monte Carlo SE at {n} studies): "
        f"{mc_bound(alpha, n):.3f} for a claim at α, {mc_bound(alpha / 2, n):.3f} at α/2 "
        "(supported, contradicted, relevant), 0 for identical / unqualified.",
        "",
        "| item | scenario | " + " | ".join(COLUMNS) + " | within bounds | power (correct claim) |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|---|",
    ]
    for r in records:
        cells = [f"{r['false'][c]:.3f}" if c in r["false"] else "·" for c in COLUMNS]
        power = "; ".join(
            f"{row}: " + ", ".join(f"{kind} {rate:.2f}" for kind, rate in kinds.items())
            for row, kinds in r["power"].items()
        )
        lines.append(
            f"| {r['item']} | {r['scenario']} | "
            + " | ".join(cells)
            + f" | {'yes' if r['within'] else '**no**'} | {power or '–'} |"
        )
    return "\n".join(lines)
