"""Study files: `load_study(path)` reads one, validates it and expands it into a `Study`.

A study declares a base config, seeds, a dataset and groups of experiments. Loading runs,
in order: the YAML and the JSON schemas (hpstudy.studyfile), the seed plan, the count of
experiments (refused above `max_experiments` before anything is expanded), the groups'
expansion into experiments (hpstudy.expand), the checks across keys (hpstudy.study_checks)
and, given the data's `Source`, the checks against its sizes (hpstudy.data_checks); the
first problem found is a StudyError naming the file, the key path and the fix, before any
job is planned, and what deserves a word lands in `Study.warnings`. `snakemake -n` and
`hpstudy check` both load studies here and print the warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpstudy.config import TrainConfig
from hpstudy.data_checks import Source, check_data
from hpstudy.expand import (
    Experiment,
    Group,
    build_config,
    count_experiments,
    expand_groups,
    grid_shape,
    resolve_batch,
)
from hpstudy.formatting import format_rows
from hpstudy.study_checks import check_study
from hpstudy.studyfile import (
    SEEDS_EXAMPLES,
    StudyError,
    flow,
    load_yaml,
    missing_study,
    validate,
)

if TYPE_CHECKING:  # imported where a study has a seed plan: hpstudy.sequential needs scipy,
    from hpstudy.sequential import SeedPlan  # 2-5 s of every dry run and `hpstudy check`


@dataclass
class Study:
    name: str
    path: Path
    description: str
    seeds: list[int]
    dataset: dict[str, Any]
    metric: str | None
    references: list[dict[str, str]]
    base: dict[str, Any]
    groups: dict[str, Group]
    sesoi: float | None = None  # smallest effect of interest, primary-metric units
    deviations: list[dict[str, str]] = field(default_factory=list)
    # sequential seeds (issue 11): `seeds` then lists every seed up to plan.max
    plan: SeedPlan | None = None
    # what runs but deserves a word before any job (tiny splits, one seed, ...): printed by
    # `hpstudy check` and the workflow
    warnings: list[str] = field(default_factory=list)

    @property
    def sequential(self) -> bool:
        return self.plan is not None

    def round_seeds(self, round_: int) -> list[int]:
        """Seeds an experiment that keeps going has after round `round_` (1-based); every
        seed for a fixed study."""
        if self.plan is None:
            return list(self.seeds)
        return self.seeds[: self.plan.seeds_at(round_)]

    @property
    def rounds(self) -> int:
        """Planned looks (1 for a fixed study)."""
        return 1 if self.plan is None else len(self.plan.looks)

    @property
    def experiments(self) -> list[Experiment]:
        return [e for g in self.groups.values() for e in g.experiments]

    def experiment(self, exp_id: str) -> Experiment:
        # an id -> experiment dict, built on first use: the workflow looks up every run's
        # experiment, and a linear search made a 10,000-experiment DAG quadratic
        by_id = self.__dict__.get("_by_id")
        if by_id is None:
            by_id = self.__dict__["_by_id"] = {e.id: e for e in self.experiments}
        return by_id[exp_id]

    def runs(self) -> list[tuple[str, int]]:
        return [(e.id, s) for e in self.experiments for s in self.seeds]

    def configs(self) -> dict[str, list[Experiment]]:
        """Distinct configurations in study order: config id -> the experiments using it.
        Each is trained once (one job, all seeds), whichever groups share it."""
        by_id = self.__dict__.get("_configs")
        if by_id is None:
            by_id = self.__dict__["_configs"] = {}
            for exp in self.experiments:
                by_id.setdefault(exp.config_id, []).append(exp)
        return by_id

    def table(self):
        """experiments.tsv: one row per experiment with its config id (`config_hash`, the
        folder under runs/), `shared_with` (the other experiments training the same
        runs) and every resolved setting."""
        import pandas as pd

        configs = self.configs()
        rows = []
        for exp in self.experiments:
            row = exp.record()
            others = [e.id for e in configs[exp.config_id] if e.id != exp.id]
            row = {
                **{k: row[k] for k in ("experiment", "group", "label", "config_hash")},
                "shared_with": ",".join(others),
                **row,
            }
            rows.append(row)
        return pd.DataFrame(rows)


MAX_EXPERIMENTS = 20_000  # a study's `max_experiments` raises it
ANNOUNCE_EXPERIMENTS = 1_000  # from this many on, the count is said before expanding


def load_study(
    path: str | Path,
    seeds: Any = None,
    source: Source | None = None,
    log: Callable[[str], None] | None = None,
) -> Study:
    """The study file at `path`, expanded; `seeds` (parse_seeds_override's result) replaces
    its `seeds` key before validation: `--config seeds=...` runs a shipped study with another
    seed plan, checked exactly as the file's own `seeds` would be. `source`: the microbead
    images the workflow will prepare (data_checks.GENERATED for the generated set); given,
    the study is also checked against its data's sizes (the workflow and `hpstudy check`
    do; a job re-reading a checked study does not). `log` hears the experiment count of a
    large study before it is expanded."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(missing_study(path))
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study file must be a mapping with name, dataset, base, groups")
    where = str(path)
    if seeds is not None:
        data = {**data, "seeds": seeds}
        where = f"{path} with --config seeds={flow(seeds)}"
    try:
        if isinstance(data.get("seeds"), dict):  # a sequential plan: name the key that is wrong
            validate(data["seeds"], "seed_plan.schema.yaml", where, ("seeds",))
        validate(data, "study.schema.yaml", where)
    except StudyError as err:
        if seeds is None or "  - seeds" not in str(err):
            raise
        raise StudyError(f"{err}\n  write it as {SEEDS_EXAMPLES}") from None
    if data["name"] != path.stem:
        raise StudyError(f"{path}: name: {data['name']!r} must equal the file name {path.stem!r}")
    plan = _seed_plan(where, data.get("seeds", 3))
    seeds = data.get("seeds", 3)
    if plan is not None:
        seeds = list(range(plan.max))
    else:
        seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    base = dict(data["base"])
    if "seed" in base:
        raise StudyError(f"{path}: base.seed: set seeds with the top-level `seeds` key")
    build_config(
        path, "base", lambda: TrainConfig.from_dict(resolve_batch(path, "base", base, {"seed": 0}))
    )
    _check_size(path, data, len(seeds), log)
    groups = expand_groups(path, data["groups"], base)
    warnings = check_study(path, data, base, groups)
    if source is not None:
        warnings += check_data(path, data["dataset"], groups, data["groups"], base, source)
    return Study(
        name=data["name"],
        path=path,
        description=data.get("description", ""),
        seeds=seeds,
        dataset=dict(data["dataset"]),
        metric=data.get("metric"),
        references=list(data.get("references", [])),
        base=base,
        groups=groups,
        sesoi=data.get("sesoi"),
        deviations=list(data.get("deviations", [])),
        plan=plan,
        warnings=warnings,
    )


def _check_size(path: Path, data: dict[str, Any], n_seeds: int, log) -> None:
    """Count the experiments from the grid sizes before expanding any: say a large count at
    once, refuse one above the cap (a 40 x 40 x 40 grid is 64,000 experiments)."""
    counts = count_experiments(data["groups"])
    total = sum(counts.values())
    cap = data.get("max_experiments", MAX_EXPERIMENTS)
    largest = sorted(counts, key=counts.get, reverse=True)[:3]
    shapes = "; ".join(f"{g}: {grid_shape(data['groups'][g])} = {counts[g]:,}" for g in largest) + (
        "; ..." if len(counts) > 3 else ""
    )
    if total > cap:
        raise StudyError(
            f"{path}: groups: {total:,} experiments ({shapes}) x {n_seeds} seed(s) = "
            f"{total * n_seeds:,} runs is more than max_experiments={cap:,}; allowed: at most "
            f"{cap:,}: shrink the grids, or add `max_experiments: {total}` to the study file "
            "if you mean it"
        )
    if total >= ANNOUNCE_EXPERIMENTS and log is not None:
        log(f"hpstudy: {path}: expanding {total:,} experiments ({shapes}) ...")


def _seed_plan(path: Path | str, seeds: Any) -> SeedPlan | None:
    """`seeds: {initial, max, step, futility, spending}` as a SeedPlan (issue 11); None for
    a fixed number or list of seeds. The schema checked types and ranges; this checks what
    relates one key to another."""
    if not isinstance(seeds, dict):
        return None
    from hpstudy.sequential import SeedPlan

    where = f"{path}: seeds"
    initial, most = seeds["initial"], seeds["max"]
    if most < initial:
        raise StudyError(
            f"{where}.max: {most} is smaller than seeds.initial={initial}; a "
            "sequential study runs at least `initial` seeds of every experiment"
        )
    try:
        return SeedPlan(
            initial=initial,
            max=most,
            step=seeds.get("step", 2),
            futility=bool(seeds.get("futility", True)),
            spending=seeds.get("spending", "obrien_fleming"),
        )
    except ValueError as err:
        raise StudyError(f"{where}: {err}") from None


def study_rows(study: Study) -> list[dict[str, Any]]:
    """One row per group of the groups x experiments x seeds table (`hpstudy check FILE`);
    add columns here to show more per group."""
    return [
        {
            "group": g.name,
            "experiments": len(g.experiments),
            "seeds": len(study.seeds),
            "runs": len(g.experiments) * len(study.seeds),
            "factors": ", ".join(g.factors) or "-",
            "labels": _some(e.label for e in g.experiments),
        }
        for g in study.groups.values()
    ]


def _some(labels, limit: int = 20) -> str:
    """At most `limit` labels, then how many more (a 27,000-label grid stays one line)."""
    labels = list(labels)
    more = f", ... ({len(labels) - limit:,} more)" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def describe(study: Study) -> str:
    """The study as a table: groups x experiments x seeds, and the totals."""
    rows = study_rows(study)
    total = {
        "group": "total",
        "experiments": len(study.experiments),
        "seeds": len(study.seeds),
        "runs": len(study.runs()),
    }
    head = (
        f"{study.path}: ok: {len(study.groups)} groups, {len(study.experiments)} "
        f"experiments, {len(study.seeds)} seeds, {len(study.runs())} runs (seeds "
        f"{', '.join(map(str, study.seeds))}); {len(study.configs())} distinct "
        f"configurations, {len(study.configs()) * len(study.seeds)} runs trained"
    )
    return head + "\n" + format_rows([*rows, total])
