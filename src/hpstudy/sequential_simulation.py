"""Sequential seeds, simulated: how often a group-sequential design (hpstudy.sequential)
claims an effect, against the fixed design at `max` seeds and the naive one that tests at
alpha at every look, and what share of the fixed design's runs it uses. Two-level studies
(one contrast a vs b), decided with the real verdict rule; `hpstudy simulate sequential`
prints the table (docs/report.md, "Sequential seeds")."""

from __future__ import annotations

import math

import numpy as np

from hpstudy.sequential import SeedPlan, futility_stop, nominal_levels

SCENARIOS = {  # effect (a - b, in units of the SD of one seed's difference), SD of a and b
    "none, equal SD": (0.0, 1.0, 1.0),
    "none, unequal SD": (0.0, 0.5, 1.5),
    "small (= sesoi), equal SD": (0.5, 1.0, 1.0),
    "medium, equal SD": (1.0, 1.0, 1.0),
    "medium, unequal SD": (1.0, 0.5, 1.5),
    "large, equal SD": (2.0, 1.0, 1.0),
    "large, unequal SD": (2.0, 0.5, 1.5),
    "collapse (30 SD), equal SD": (30.0, 1.0, 1.0),
}


def simulate(
    n_studies: int = 1000,
    plan: SeedPlan | None = None,
    sesoi: float = 0.5,
    rho: float = 0.5,
    expect: str = "a_better",
    seed: int = 0,
    scenarios: dict | None = None,
) -> list[dict]:
    """Simulated two-level studies (one contrast a vs b, `expect` predicted), decided with
    the real rule (the per-seed t of hpstudy.analysis.inference + analysis.decide) at every
    look's nominal level, next to
    the fixed design (plan.max seeds, ALPHA) and to the naive design (ALPHA at every look).

    Seed-level data: y = mean + block_seed + noise, the block shared by both levels of a seed
    (correlation `rho` between a and b of one seed at equal SDs), noise SDs per scenario
    scaled so that the SD of one seed's difference a - b is 1 at equal SDs."""
    from hpstudy.analysis import ALPHA, decide
    from hpstudy.analysis.inference import per_seed_t

    plan = plan or SeedPlan(initial=3, max=10, step=2)
    levels = nominal_levels(plan.looks, ALPHA, plan.spending)
    rng = np.random.default_rng(seed)
    out = []

    def verdict(a, b, n, level):
        t = per_seed_t(a[:n] - b[:n])
        return decide(expect, t.estimate, t.p(), t.tost(sesoi), sesoi, 1, t.testable, alpha=level)

    for name, (effect, sd_a, sd_b) in (scenarios or SCENARIOS).items():
        counts = {"seq": {}, "fixed": {}, "naive": {}}
        same = runs_seq = 0
        for _ in range(n_studies):
            # with SD 1 per level: var(a - b) = 2 (1 - rho) = 1 at rho = 0.5
            block = rng.normal(0, math.sqrt(rho), plan.max)
            a = effect + block + rng.normal(0, sd_a * math.sqrt(1 - rho), plan.max)
            b = block + rng.normal(0, sd_b * math.sqrt(1 - rho), plan.max)
            seq, used, naive = _looks(a, b, plan, levels, sesoi, verdict, ALPHA)
            fixed = verdict(a, b, plan.max, ALPHA)
            for kind, v in (("seq", seq), ("fixed", fixed), ("naive", naive)):
                counts[kind][v] = counts[kind].get(v, 0) + 1
            same += seq == fixed
            runs_seq += 2 * used
        claim = ("supported", "contradicted", "differs")
        out.append(
            {
                "scenario": name,
                "effect": effect,
                "sd_a": sd_a,
                "sd_b": sd_b,
                "studies": n_studies,
                **{
                    f"{kind}_claim": sum(counts[kind].get(v, 0) for v in claim) / n_studies
                    for kind in counts
                },
                **{
                    f"{kind}_{v.replace(' ', '_')}": counts[kind].get(v, 0) / n_studies
                    for kind in counts
                    for v in ("supported", "contradicted", "no relevant effect", "inconclusive")
                },
                "same_verdict": same / n_studies,
                "runs_share": runs_seq / (n_studies * 2 * plan.max),
            }
        )
    return out


def _looks(a, b, plan: SeedPlan, levels, sesoi: float, verdict, alpha: float):
    """One simulated study through its looks: the sequential verdict and the seeds it used
    (it stops at the first decided look, a futile one or the last), and the naive verdict
    (alpha at every look, stopping at the first decided one)."""
    looks = plan.looks
    seq = naive = None
    used = looks[-1]
    for k, n in enumerate(looks):
        v = verdict(a, b, n, levels[k])
        d = a[:n] - b[:n]
        futile = (
            seq is None
            and v == "inconclusive"
            and futility_stop(
                plan, k, float(d.mean()), float(np.std(d, ddof=1)), n, sesoi, levels[-1]
            )
            is not None
        )
        if seq is None and (v != "inconclusive" or futile or k == len(looks) - 1):
            seq, used = v, n
        w = v if levels[k] == alpha else verdict(a, b, n, alpha)
        if naive is None and (w != "inconclusive" or k == len(looks) - 1):
            naive = w
        if seq is not None and naive is not None:
            break
    return seq, used, naive


def simulation_table(rows: list[dict], plan: SeedPlan) -> str:
    """The simulation as a markdown table plus the mix line."""
    mc = 2 * math.sqrt(0.05 * 0.95 / rows[0]["studies"])
    lines = [
        f"Plan: seeds {{initial: {plan.initial}, max: {plan.max}, step: {plan.step}}}, "
        f"looks {plan.looks}, {plan.spending} spending"
        + (", futility on" if plan.futility else "")
        + ", nominal levels "
        + ", ".join(f"{x:.4f}" for x in nominal_levels(plan.looks, 0.05, plan.spending))
        + f"; {rows[0]['studies']} simulated studies per row (Monte Carlo 2 SE at 0.05: "
        f"±{mc:.3f}).",
        "",
        "| scenario | claim rate: sequential | fixed max | naive (0.05 every look) "
        "| supported seq / fixed | same verdict as fixed | runs vs fixed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['seq_claim']:.3f} | {r['fixed_claim']:.3f} | "
            f"{r['naive_claim']:.3f} | {r['seq_supported']:.3f} / {r['fixed_supported']:.3f} "
            f"| {r['same_verdict']:.3f} | {r['runs_share']:.2f} |"
        )
    same = np.mean([r["same_verdict"] for r in rows])
    share = np.mean([r["runs_share"] for r in rows])
    lines += [
        "",
        f"Equal mix of the {len(rows)} scenarios: same verdict as fixed max seeds in "
        f"{same:.1%} of studies with {share:.0%} of its runs.",
    ]
    return "\n".join(lines)
