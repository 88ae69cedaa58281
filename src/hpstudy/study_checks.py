"""Checks across keys: what a study asks must be runnable and answerable before any job.

The schema checks each value alone (hpstudy.studyfile) and TrainConfig each experiment's
settings; the checks here relate keys to each other and to the dataset, after the groups are
expanded: settings and metrics only one task allows, predictions a group's design can test
(a factor it varies, a sesoi for "no effect"), early stopping without a validation hold-out,
enough seeds. Each raises a StudyError naming the file, the key path, the value and the fix,
or returns a warning for what runs but deserves a word. New pre-job checks belong here,
called from `check_study`; checks against the data's sizes: hpstudy.data_checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpstudy.data_checks import check_split_spec
from hpstudy.expand import Group
from hpstudy.studyfile import StudyError, choices, did_you_mean_value


def check_study(
    path: Path, data: dict[str, Any], base: dict[str, Any], groups: dict[str, Group]
) -> list[str]:
    """Every cross-key check of a schema-valid study file (`data`) with its expanded groups;
    returns the warnings."""
    check_task(path, data["dataset"]["name"], base, groups)
    check_metric(path, data)
    warnings = check_split_spec(path, data["dataset"])
    for group in groups.values():
        check_factor(path, group, data["groups"][group.name])
        check_analysis(path, group)
        check_sesoi(path, group, data.get("sesoi"))
    check_validation_split(path, data["dataset"], groups)
    check_split_seed(path, data["dataset"])
    return warnings + check_seeds(path, data.get("seeds", 3))


def check_metric(path: Path, data: dict[str, Any]) -> None:
    """The primary metric must be one the dataset's task reports."""
    from hpstudy.datasets import DATASET_TASKS
    from hpstudy.metrics import TASK_METRICS

    metric, name = data.get("metric"), data["dataset"]["name"]
    task = DATASET_TASKS[name]
    if metric is not None and metric not in TASK_METRICS[task]:
        allowed = list(TASK_METRICS[task])
        raise StudyError(
            f"{path}: metric: {metric!r} is not a metric of dataset {name!r} ({task}); "
            f"choose one of {allowed}{did_you_mean_value(metric, allowed)}"
        )


def check_seeds(path: Path, seeds: Any) -> list[str]:
    """One seed runs (a smoke test, a benchmark) but answers nothing: said loudly."""
    n = seeds if isinstance(seeds, int) else None if isinstance(seeds, dict) else len(seeds)
    if n is None or n >= 2:
        return []
    return [
        f"{path}: seeds: {seeds!r}: one seed per experiment gives no spread, so no question "
        "of this study can be tested (every verdict will be 'not testable'); fine for a "
        "smoke test, use seeds: 3 or more for answers"
    ]


def check_factor(path: Path, group: Group, spec: dict[str, Any]) -> None:
    """`factor:` names the setting the group varies (statistics and plots group by it)."""
    factor = spec.get("factor")
    if factor is None:
        return
    keys = list(dict.fromkeys(k for e in group.experiments for k in e.overrides))
    varying = [k for k in keys if len(_values(group, k)) > 1]
    where = f"{path}: groups.{group.name}.factor"
    if factor not in keys:
        raise StudyError(
            f"{where}: {factor!r} is not a setting this group varies; allowed: one of "
            f"{varying or keys}{did_you_mean_value(factor, varying or keys)}"
        )
    if factor not in varying:
        value = next(iter(_values(group, factor)))
        raise StudyError(
            f"{where}: {factor!r} does not vary in this group (every experiment has "
            f"{factor}={value}); allowed: a setting it varies, one of {varying}"
        )


def _values(group: Group, key: str) -> set[str]:
    return {
        repr(e.overrides[key] if key in e.overrides else getattr(e.config, key, None))
        for e in group.experiments
    }


def check_sesoi(path: Path, group: Group, sesoi: float | None) -> None:
    """A prediction of no effect is tested against the smallest effect of interest (TOST):
    without one it can never be answered."""
    if sesoi is not None:
        return
    asks = [".expect.none"] if group.expect.get("none") else []
    asks += [
        f".contrasts[{i}].expect"
        for i, c in enumerate(group.contrasts)
        if c.get("expect") == "equal"
    ]
    if asks:
        raise StudyError(
            f"{path}: groups.{group.name}{asks[0]}: predicts no relevant effect, which is "
            "tested against the smallest effect of interest, and the study sets no `sesoi`; "
            "without one the question can never be answered: add e.g. `sesoi: 0.01` (in "
            "units of the study's metric) at the top level, or drop the prediction"
        )


def check_split_seed(path: Path, dataset: dict[str, Any]) -> None:
    """`split: {seed: per_run}` redraws a split per run: only a random split (or the
    validation part of a predefined one) can be redrawn, not an ordered one."""
    split = dataset.get("split", {})
    if split.get("seed") == "per_run" and split.get("method") == "ordered":
        raise StudyError(
            f"{path}: dataset.split.seed: per_run redraws the split from each run's seed, "
            "but method: ordered takes samples in file order; use method: random (or "
            "predefined), or a fixed seed"
        )


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def check_analysis(path: Path, group: Group) -> None:
    """What a group predicts must be testable with the design it runs (issue 10): a trend
    needs one numeric grid factor, contrasts need this group's labels."""
    where = f"{path}: groups.{group.name}"
    expect = group.expect
    if expect:
        if ("trend" in expect) == bool(expect.get("none")):
            raise StudyError(
                f"{where}.expect: {expect!r} must give either `trend` "
                "(increasing/decreasing) or `none: true`, not both or neither"
            )
        if "scale" in expect and "trend" not in expect:
            raise StudyError(
                f"{where}.expect.scale: {expect['scale']!r} only goes with "
                "`trend`; drop it or add `trend: increasing|decreasing`"
            )
    if "trend" in expect:
        if group.kind != "grid":
            raise StudyError(
                f"{where}.expect.trend: {expect['trend']!r} needs a `grid` group of one "
                "numeric factor; this is a `list` group whose levels change several settings "
                "at once; declare `contrasts` instead"
            )
        varying = [
            f
            for f in group.factors
            if len({repr(getattr(e.config, f, None)) for e in group.experiments}) > 1
        ]
        if len(varying) != 1:
            raise StudyError(
                f"{where}.expect.trend: a trend needs exactly one varying grid factor, this "
                f"group varies {varying}; split the grid or drop `trend`"
            )
        values = [getattr(e.config, varying[0]) for e in group.experiments]
        if not all(_numeric(v) for v in values):
            raise StudyError(
                f"{where}.expect.trend: factor {varying[0]!r} has non-numeric values "
                f"{values}; a trend needs numbers (use `contrasts` to compare named levels)"
            )
        if expect.get("scale") == "log2" and min(values) <= 0:
            raise StudyError(
                f"{where}.expect.scale: log2 needs positive values of {varying[0]!r}, got "
                f"{values}; use scale: linear"
            )
    labels = [e.label for e in group.experiments]
    names = set()
    for i, contrast in enumerate(group.contrasts):
        key = f"{where}.contrasts[{i}]"
        if contrast["name"] in names:
            raise StudyError(
                f"{key}.name: {contrast['name']!r} is used twice in this group; "
                "give each contrast its own name"
            )
        names.add(contrast["name"])
        sides = {}
        for side in ("a", "b"):
            value = contrast[side]
            chosen = [value] if isinstance(value, str) else list(value)
            unknown = [v for v in chosen if v not in labels]
            if unknown:
                raise StudyError(
                    f"{key}.{side}: {unknown[0]!r} is not a label of group "
                    f"{group.name!r}; choose from {choices(unknown[0], labels)}"
                )
            sides[side] = set(chosen)
        if sides["a"] & sides["b"]:
            raise StudyError(
                f"{key}: {sorted(sides['a'] & sides['b'])} is on both sides "
                "(a and b); a contrast compares disjoint sets of levels"
            )


def check_validation_split(
    path: Path,
    dataset: dict[str, Any],
    groups: dict[str, Group],
) -> None:
    """Without a validation hold-out (`split.val: 0`, e.g. training on all 50,000 CIFAR-10
    images and evaluating on the official test set) nothing may be selected on validation
    data: early stopping is off, and the test metrics come from the final weights."""
    split = dataset.get("split", {})
    if "val" not in split or split["val"] > 0:
        return
    for group in groups.values():
        for exp in group.experiments:
            if exp.config.patience is not None:
                raise StudyError(
                    f"{path}: groups.{group.name}: experiment {exp.id} sets patience="
                    f"{exp.config.patience}, but dataset.split.val is 0 (no validation "
                    "hold-out), so there is nothing to stop early on; set patience: null "
                    "(the final weights are tested) or give dataset.split a val fraction"
                )


def check_task(path: Path, dataset: str, base: dict[str, Any], groups: dict[str, Group]) -> None:
    """Settings that only make sense for one task are errors at load time, not mid-run."""
    from hpstudy.datasets import DATASET_TASKS

    if DATASET_TASKS.get(dataset) != "regression":
        return
    if base.get("mix", "none") != "none":
        raise StudyError(
            f"{path}: base.mix: {base['mix']!r} mixes class labels, but dataset "
            f"{dataset!r} is a regression task; set mix: none"
        )
    for group in groups.values():
        for exp in group.experiments:
            if exp.config.mix != "none":
                raise StudyError(
                    f"{path}: groups.{group.name}: experiment {exp.id} sets mix="
                    f"{exp.config.mix!r}, which mixes class labels, but dataset {dataset!r} is "
                    "a regression task; set mix: none"
                )
