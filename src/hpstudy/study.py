"""Study files: validation against the JSON schema and expansion into experiments.

A study declares a base config, seeds, a dataset and groups. Each group is a `grid`
(cartesian product) or a `list` of overrides; every experiment gets a readable, stable id
`{group}-{label}` where the label spells the overridden values (`batch_size-bs16`).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpstudy import paths
from hpstudy.config import DEFAULTS, ConfigError, TrainConfig, config_hash, did_you_mean
from hpstudy.sequential import SeedPlan

SHIPPED_DIR = paths.shipped_studies()
EXPERIMENT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# Keys of train_config.schema.yaml that are not TrainConfig fields: study files only,
# resolved at load time (see resolve_batch).
STUDY_ONLY_KEYS = ("effective_batch_size",)
MAX_LABEL = 64  # room for the CIFAR-100 grid labels (preact_resnet18_mixcutmix_mixup_...)

# Short spellings for the value labels in experiment ids.
ABBREV = {
    "batch_size": "bs",
    "lr": "lr",
    "grad_accum_steps": "acc",
    "num_workers": "nw",
    "cleanup_every": "cl",
    "weight_decay": "wd",
    "epochs": "ep",
    "optimizer": "",
    "scheduler": "",
    "model": "",
    "mix": "mix",
    "step_size": "step",
    "gamma": "g",
    "plateau_factor": "pf",
    "plateau_patience": "pp",
    "t_max": "tmax",
    "momentum": "mom",
    "train_subset": "n",
    "upsample_size": "up",
    "data_path": "",
    "mixed_precision": "amp",
    "patience": "pat",
    "seed": "s",
    "effective_batch_size": "ebs",
    "min_lr": "minlr",
    "eta_min": "etamin",
    "drop_last": "droplast",
    "color_jitter": "cj",
    "color_jitter_hue": "hue",
}


class StudyError(ValueError):
    """A study file is invalid; the message names the file, the key path and the fix."""


@dataclass
class Experiment:
    id: str
    group: str
    label: str
    overrides: dict[str, Any]
    config: TrainConfig

    @functools.cached_property
    def config_id(self) -> str:
        """Hash of the resolved config without its seed: experiments of any group with the
        same id train the same runs, once per study (`runs/{config_id}/seed{N}/`)."""
        cfg = self.config.to_dict()
        cfg.pop("seed")
        return config_hash(cfg)

    def record(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        cfg.pop("seed")
        return {
            "experiment": self.id,
            "group": self.group,
            "label": self.label,
            "config_hash": self.config_id,
            "overrides": json.dumps(self.overrides, sort_keys=True),
            **{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in cfg.items()},
        }


@dataclass
class Group:
    name: str
    question: str
    hypothesis: str
    factors: list[str]
    baseline: str | None
    experiments: list[Experiment] = field(default_factory=list)
    kind: str = "grid"  # "grid" or "list"
    expect: dict[str, Any] = field(default_factory=dict)  # {trend, scale} or {none: true}
    contrasts: list[dict[str, Any]] = field(default_factory=list)  # {name, a, b, expect}


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


def load_yaml(path: Path) -> Any:
    try:
        with open(path) as fh:
            # libyaml's parser when present: the pure-Python one took most of a
            # 10,000-experiment dry run
            return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise StudyError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {err}") from None


def _registry():
    from referencing import Registry, Resource

    resources = []
    for schema_file in paths.schemas().glob("*.schema.yaml"):
        resources.append((schema_file.name, Resource.from_contents(load_yaml(schema_file))))
    return Registry().with_resources(resources)


@functools.cache
def _validator(schema_name: str):
    """Built once per process: a 10,000-experiment study validates 10,000 overrides."""
    import jsonschema

    schema = load_yaml(paths.schema(schema_name))
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def validate(data: Any, schema_name: str, where: str, prefix: tuple = ()) -> None:
    """Validate against workflow/schemas/<schema_name>; every error names its key path
    (`prefix` is where `data` sits in the file, e.g. ("groups", "g", "list", 0))."""
    validator = _validator(schema_name)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    # a failed oneOf/anyOf also reports its branches; the branch errors say it better
    errors = [
        e
        for e in errors
        if not (
            e.validator == "oneOf" and e.context and "grid" not in json.dumps(e.validator_value)
        )
    ] or errors
    if errors:
        lines = [f"{where}: {len(errors)} error(s):"]
        for err in errors:
            lines.append(f"  - {_key_path((*prefix, *err.absolute_path))}: {_explain(err)}")
        raise StudyError("\n".join(lines))


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed(schema: dict[str, Any]) -> str:
    """What a schema allows, in words: 'an integer >= 1', 'a number > 0 and <= 10', ..."""
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if ("oneOf" in schema or "anyOf" in schema) and "type" not in schema:
        return " or ".join(_allowed(s) for s in schema.get("oneOf", schema.get("anyOf")))
    kinds = schema.get("type", "a name" if "pattern" in schema else "a value")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "null": "null",
        "array": "a list",
        "object": "a mapping",
    }
    text = " or ".join(words.get(k, k) for k in kinds)
    bounds = [
        f"{op} {schema[key]}"
        for key, op in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in schema
    ]
    if bounds:
        text += " " + " and ".join(bounds)
    if "minItems" in schema:
        text += f" with at least {schema['minItems']} item(s)"
    if schema.get("uniqueItems"):
        text += " without repeats"
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    return text


def _explain(err) -> str:
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown key(s) {extra}{did_you_mean(extra, allowed)}; allowed: {allowed}"
    if err.validator == "enum":
        return f"{err.instance!r} is not allowed; choose one of {err.validator_value}"
    if err.validator == "oneOf" and "grid" in json.dumps(err.validator_value):
        return "a group needs exactly one of `grid` (dict of value lists) or `list` (overrides)"
    if err.validator in ("minProperties", "minItems") and not err.instance:
        return "is empty; give at least one entry"
    if err.validator in (
        "type",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "oneOf",
        "anyOf",
        "pattern",
        "uniqueItems",
        "minItems",
    ):
        return f"{err.instance!r} is not allowed; expected {_allowed(schema)}"
    return err.message


SEEDS_EXAMPLE = "seeds='{initial: 3, max: 10, step: 2}'"


def parse_seeds_override(value: Any) -> Any:
    """The `seeds` override of the workflow (`--config seeds=...`) as the study file's
    `seeds` would hold it; None when not given. Snakemake hands a nested value over as a
    string, or as a mapping of strings (it parses `--config` with YAML's BaseLoader):
    both are parsed with YAML here, so `{initial: 3, max: 10}`, `5` and `[0, 1, 2]` read
    as they would in a study file."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise StudyError(
                f"--config seeds={value!r}: not valid YAML ({str(err).splitlines()[0]}); "
                f"write it as {SEEDS_EXAMPLE} (sequential) or seeds=5 (fixed)"
            ) from None
        return parse_seeds_override(value) if isinstance(value, dict | list) else value
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return parse_seeds_override(value)


def load_study(path: str | Path, seeds: Any = None) -> Study:
    """The study file at `path`, expanded; `seeds` (parse_seeds_override's result) replaces
    its `seeds` key before validation: `--config seeds=...` runs a shipped study with another
    seed plan, checked exactly as the file's own `seeds` would be."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(missing_study(path))
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study file must be a mapping with name, dataset, base, groups")
    where = str(path)
    if seeds is not None:
        data = {**data, "seeds": seeds}
        where = f"{path} with --config seeds={_flow(seeds)}"
    if isinstance(data.get("seeds"), dict):  # a sequential plan: name the key that is wrong
        validate(data["seeds"], "seed_plan.schema.yaml", where, ("seeds",))
    validate(data, "study.schema.yaml", where)
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
    _check(
        path, "base", lambda: TrainConfig.from_dict(resolve_batch(path, "base", base, {"seed": 0}))
    )
    groups: dict[str, Group] = {}
    seen: dict[str, str] = {}
    for gname, gspec in data["groups"].items():
        group = _expand_group(path, gname, gspec, base)
        for exp in group.experiments:
            if not EXPERIMENT_ID.match(exp.id):  # ids become paths and cluster job names
                raise StudyError(
                    f"{path}: groups.{gname}: experiment id {exp.id!r} is not "
                    f"safe in paths and job names ({EXPERIMENT_ID.pattern})"
                )
            if exp.id in seen:
                raise StudyError(
                    f"{path}: groups.{gname}: duplicate experiment id {exp.id!r}; give the "
                    "overrides distinct values or split them into another group"
                )
            seen[exp.id] = gname
        groups[gname] = group
    _check_task(path, data["dataset"]["name"], base, groups)
    for group in groups.values():
        _check_analysis(path, group)
    _check_validation_split(path, data["dataset"], groups)
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
    )


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style ({initial: 3, max: 10})."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


def _seed_plan(path: Path | str, seeds: Any) -> SeedPlan | None:
    """`seeds: {initial, max, step, futility, spending}` as a SeedPlan (issue 11); None for
    a fixed number or list of seeds. The schema checked types and ranges; this checks what
    relates one key to another."""
    if not isinstance(seeds, dict):
        return None
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


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check_analysis(path: Path, group: Group) -> None:
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
                    f"{group.name!r}; choose from {labels}"
                )
            sides[side] = set(chosen)
        if sides["a"] & sides["b"]:
            raise StudyError(
                f"{key}: {sorted(sides['a'] & sides['b'])} is on both sides "
                "(a and b); a contrast compares disjoint sets of levels"
            )


def _check_validation_split(
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


def _check_task(path: Path, dataset: str, base: dict[str, Any], groups: dict[str, Group]) -> None:
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


def _check(path: Path, where: str, build):
    """Run a TrainConfig build; its ConfigError becomes a StudyError naming file and key."""
    try:
        return build()
    except ConfigError as err:
        message = str(err).removeprefix("config: ")
        raise StudyError(f"{path}: {where}: {message}") from None


def resolve_batch(path: Path, where: str, *layers: dict[str, Any]) -> dict[str, Any]:
    """Merge config layers (base, fixed, override: later wins) and resolve
    `effective_batch_size`, a study-file key that is not a TrainConfig field: it fixes
    batch_size x grad_accum_steps, so a group can vary batch_size at a constant effective
    batch. grad_accum_steps is derived from it unless a more specific layer sets it, and
    then both must agree; one that does not divide is an error, never rounded."""
    merged = {k: v for layer in layers for k, v in layer.items()}
    if "effective_batch_size" not in merged:
        return merged
    ebs = merged.pop("effective_batch_size")
    bs = merged.get("batch_size", DEFAULTS["batch_size"])
    depth = {
        k: max((i for i, layer in enumerate(layers) if k in layer), default=-1)
        for k in ("effective_batch_size", "grad_accum_steps")
    }
    if depth["grad_accum_steps"] > depth["effective_batch_size"]:
        acc = merged["grad_accum_steps"]
        if bs * acc != ebs:
            raise StudyError(
                f"{path}: {where}: effective_batch_size={ebs} is not batch_size x "
                f"grad_accum_steps = {bs} x {acc} = {bs * acc}; make them agree, or drop "
                "grad_accum_steps so that it is derived"
            )
    elif ebs % bs:
        lower, upper = bs * max(ebs // bs, 1), bs * (ebs // bs + 1)
        raise StudyError(
            f"{path}: {where}: effective_batch_size={ebs} is not a multiple of "
            f"batch_size={bs}; allowed: a multiple of batch_size (e.g. {lower} or {upper}), "
            "so that grad_accum_steps = effective_batch_size / batch_size is a whole number"
        )
    else:
        merged["grad_accum_steps"] = ebs // bs
    return merged


def _expand_group(path: Path, gname: str, spec: dict[str, Any], base: dict[str, Any]) -> Group:
    fixed = dict(spec.get("fixed", {}))
    if "grid" in spec:
        for key, values in spec["grid"].items():  # value by value: errors name grid.KEY
            for value in values:
                validate(
                    {key: value}, "train_config.schema.yaml", str(path), ("groups", gname, "grid")
                )
        keys = list(spec["grid"])
        overrides = [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(spec["grid"][k] for k in keys))
        ]
    else:
        overrides = [dict(o) for o in spec["list"]]
        keys = list(dict.fromkeys(k for o in overrides for k in o))
    if "seed" in keys:
        raise StudyError(f"{path}: groups.{gname}: `seed` cannot be overridden; use `seeds`")
    experiments = []
    for i, over in enumerate(overrides):
        label = make_label(over)
        if "grid" in spec:
            where = f"groups.{gname}.grid (experiment {gname}-{label})"
        else:
            where = f"groups.{gname}.list[{i}]"
            validate(over, "train_config.schema.yaml", str(path), ("groups", gname, "list", i))
        values = resolve_batch(path, where, base, fixed, over, {"seed": 0})
        cfg = _check(path, where, lambda values=values: TrainConfig.from_dict(values))
        experiments.append(Experiment(f"{gname}-{label}", gname, label, over, cfg))
    labels = [e.label for e in experiments]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise StudyError(
            f"{path}: groups.{gname}: duplicate experiment id '{gname}-{duplicates[0]}'; give "
            "the overrides distinct values or split them into another group"
        )
    baseline = spec.get("baseline")
    if baseline is not None and baseline not in {e.label for e in experiments}:
        raise StudyError(
            f"{path}: groups.{gname}.baseline: {baseline!r} is not one of this group's labels "
            f"{[e.label for e in experiments]}"
        )
    factors = [spec["factor"]] if "factor" in spec else keys
    return Group(
        gname,
        spec.get("question", ""),
        spec.get("hypothesis", ""),
        factors,
        baseline,
        experiments,
        kind="grid" if "grid" in spec else "list",
        expect=dict(spec.get("expect", {})),
        contrasts=[dict(c) for c in spec.get("contrasts", [])],
    )


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "+".join(_fmt(v) for v in value) or "none"
    return str(value)


def make_label(overrides: dict[str, Any]) -> str:
    """Readable label of an override set, e.g. {'batch_size': 16, 'lr': 1e-3} -> 'bs16_lr1e-3'.
    Falls back to a short hash when the spelled label would be long or unsafe."""
    if not overrides:
        return "base"
    parts = [ABBREV.get(k, k) + _fmt(v) for k, v in overrides.items()]
    label = "_".join(parts)
    if len(label) > MAX_LABEL or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", label):
        label = "h" + config_hash(overrides)[:8]
    return label


def resolved_defaults() -> dict[str, Any]:
    return dict(DEFAULTS)


def shipped_studies(studies_dir: str | Path = SHIPPED_DIR) -> list[str]:
    """Names of the study files in a folder (config/studies by default)."""
    return sorted(p.stem for p in Path(studies_dir).glob("*.yaml"))


def missing_study(path: str | Path) -> str:
    """Why a study file is missing, with the studies that exist and the nearest name."""
    path = Path(path)
    folder = path.parent if path.parent.is_dir() else SHIPPED_DIR
    names = shipped_studies(folder)
    where = (
        "shipped studies" if folder.resolve() == SHIPPED_DIR.resolve() else f"studies in {folder}"
    )
    hint = did_you_mean([path.stem], names).removeprefix("; ")
    return f"{path}: no such study file; {where}: {', '.join(names) or 'none'}" + (
        f"; {hint}" if hint else ""
    )


def study_rows(study: Study) -> list[dict[str, Any]]:
    """One row per group of the groups x experiments x seeds table (`python -m
    hpstudy.study FILE`); add columns here to show more per group."""
    return [
        {
            "group": g.name,
            "experiments": len(g.experiments),
            "seeds": len(study.seeds),
            "runs": len(g.experiments) * len(study.seeds),
            "factors": ", ".join(g.factors) or "-",
            "labels": ", ".join(e.label for e in g.experiments),
        }
        for g in study.groups.values()
    ]


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table with aligned columns (the columns of the first row)."""
    columns = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    return "\n".join(
        "  ".join(str(r.get(c, "")).ljust(width[c]) for c in columns).rstrip()
        for r in [{c: c for c in columns}, *rows]
    )


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


USAGE = """usage: python -m hpstudy.study STUDY.yaml [STUDY.yaml ...]

Check study files before running them: each is validated (schema, configs, ids) and printed
as a table of its groups x experiments x seeds. Exit status 2 and the reason on stderr for
the first invalid file. Shipped studies: config/studies/NAME.yaml ({names})."""


def main(argv: list[str] | None = None) -> int:
    """`python -m hpstudy.study STUDY.yaml...`: check study files before submitting a study,
    then print what each costs (hpstudy.cost: runs, training FLOPs, expected time here and,
    with --device-profile, on that device); exit status 2 and the reason on stderr for the
    first invalid one."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m hpstudy.study",
        description=USAGE.split("\n", 2)[2].format(names=", ".join(shipped_studies())),
    )
    parser.add_argument("studies", nargs="*", metavar="STUDY.yaml")
    parser.add_argument(
        "--device-profile",
        metavar="FILE",
        default=None,
        help="also estimate on the device this calibration was made on "
        "(python -m hpstudy.cost calibrate STUDY.yaml --out FILE)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1)")
    parser.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="images of your microbead folder (default: the generated 1948)",
    )
    parser.add_argument("--no-cost", action="store_true", help="only check the files")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.studies:
        print(USAGE.format(names=", ".join(shipped_studies())), file=sys.stderr)
        return 2
    studies = []
    for name in args.studies:
        try:
            study = load_study(name)
        except StudyError as err:
            print(f"hpstudy: invalid study: {err}", file=sys.stderr)
            return 2
        print(describe(study))
        studies.append(study)
    if args.no_cost:
        return 0
    import os

    from hpstudy import cost

    parallel = os.cpu_count() or 1
    here = cost.Calibration(threads=args.threads)
    for study in studies:
        runs = cost.estimate_study(study, here, args.n_images)
        print(cost.report(study, runs, here, parallel=max(parallel // args.threads, 1)))
        if args.device_profile:
            there = cost.Calibration(device_profile=args.device_profile)
            print(cost.report(study, cost.estimate_study(study, there, args.n_images), there))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
