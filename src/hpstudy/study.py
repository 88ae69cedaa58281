"""Study files: validation against the JSON schema and expansion into experiments.

A study declares a base config, seeds, a dataset and groups. Each group is a `grid`
(cartesian product) or a `list` of overrides; every experiment gets a readable, stable id
`{group}-{label}` where the label spells the overridden values (`batch_size-bs16`).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpstudy.config import DEFAULTS, ConfigError, TrainConfig, config_hash

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
EXPERIMENT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[A-Za-z0-9][A-Za-z0-9_.+-]*$")
MAX_LABEL = 48

# Short spellings for the value labels in experiment ids.
ABBREV = {
    "batch_size": "bs", "lr": "lr", "grad_accum_steps": "acc", "num_workers": "nw",
    "cleanup_every": "cl", "weight_decay": "wd", "epochs": "ep", "optimizer": "",
    "scheduler": "", "model": "", "mix": "mix", "step_size": "step", "gamma": "g",
    "plateau_factor": "pf", "plateau_patience": "pp", "t_max": "tmax", "momentum": "mom",
    "train_subset": "n", "upsample_size": "up", "data_path": "", "mixed_precision": "amp",
    "patience": "pat", "seed": "s",
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

    def record(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        cfg.pop("seed")
        return {
            "experiment": self.id,
            "group": self.group,
            "label": self.label,
            "config_hash": config_hash(cfg),
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

    @property
    def experiments(self) -> list[Experiment]:
        return [e for g in self.groups.values() for e in g.experiments]

    def experiment(self, exp_id: str) -> Experiment:
        for e in self.experiments:
            if e.id == exp_id:
                return e
        raise KeyError(exp_id)

    def runs(self) -> list[tuple[str, int]]:
        return [(e.id, s) for e in self.experiments for s in self.seeds]

    def table(self):
        import pandas as pd

        return pd.DataFrame([e.record() for e in self.experiments])


def load_yaml(path: Path) -> Any:
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise StudyError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {err}") from None


def _registry():
    from referencing import Registry, Resource

    resources = []
    for schema_file in SCHEMA_DIR.glob("*.schema.yaml"):
        resources.append((schema_file.name, Resource.from_contents(load_yaml(schema_file))))
    return Registry().with_resources(resources)


def validate(data: Any, schema_name: str, where: str) -> None:
    """Validate against workflow/schemas/<schema_name>; every error names its key path."""
    import jsonschema

    schema = load_yaml(SCHEMA_DIR / schema_name)
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{where}: {len(errors)} error(s):"]
        for err in errors:
            lines.append(f"  - {_key_path(err.absolute_path)}: {_explain(err)}")
        raise StudyError("\n".join(lines))


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(err) -> str:
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown key(s) {extra}; allowed: {allowed}"
    if err.validator == "enum":
        return f"{err.instance!r} is not allowed; choose one of {err.validator_value}"
    if err.validator == "oneOf" and "grid" in json.dumps(err.validator_value):
        return "a group needs exactly one of `grid` (dict of value lists) or `list` (overrides)"
    return err.message


def load_study(path: str | Path) -> Study:
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study file must be a mapping with name, dataset, base, groups")
    validate(data, "study.schema.yaml", str(path))
    if data["name"] != path.stem:
        raise StudyError(
            f"{path}: name: {data['name']!r} must equal the file name {path.stem!r}"
        )
    seeds = data.get("seeds", 3)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    base = dict(data["base"])
    if "seed" in base:
        raise StudyError(f"{path}: base.seed: set seeds with the top-level `seeds` key")
    _check(path, "base", lambda: TrainConfig.from_dict({**base, "seed": 0}))
    groups: dict[str, Group] = {}
    seen: dict[str, str] = {}
    for gname, gspec in data["groups"].items():
        group = _expand_group(path, gname, gspec, base)
        for exp in group.experiments:
            if exp.id in seen:
                raise StudyError(
                    f"{path}: groups.{gname}: duplicate experiment id {exp.id!r}; give the "
                    "overrides distinct values or split them into another group"
                )
            seen[exp.id] = gname
        groups[gname] = group
    return Study(
        name=data["name"], path=path, description=data.get("description", ""), seeds=seeds,
        dataset=dict(data["dataset"]), metric=data.get("metric"),
        references=list(data.get("references", [])), base=base, groups=groups,
    )


def _check(path: Path, where: str, build):
    try:
        return build()
    except ConfigError as err:
        raise StudyError(f"{path}: {where}: {err}") from None


def _expand_group(path: Path, gname: str, spec: dict[str, Any], base: dict[str, Any]) -> Group:
    fixed = dict(spec.get("fixed", {}))
    if "grid" in spec:
        keys = list(spec["grid"])
        overrides = [dict(zip(keys, values, strict=True))
                     for values in itertools.product(*(spec["grid"][k] for k in keys))]
    else:
        overrides = [dict(o) for o in spec["list"]]
        keys = list(dict.fromkeys(k for o in overrides for k in o))
    if "seed" in keys:
        raise StudyError(f"{path}: groups.{gname}: `seed` cannot be overridden; use `seeds`")
    experiments = []
    for i, over in enumerate(overrides):
        where = f"groups.{gname}.{'grid' if 'grid' in spec else f'list[{i}]'}"
        validate(over, "train_config.schema.yaml", f"{path}: {where}")
        values = {**base, **fixed, **over, "seed": 0}
        cfg = _check(path, where, lambda values=values: TrainConfig.from_dict(values))
        label = make_label(over)
        experiments.append(Experiment(f"{gname}-{label}", gname, label, over, cfg))
    baseline = spec.get("baseline")
    if baseline is not None and baseline not in {e.label for e in experiments}:
        raise StudyError(
            f"{path}: groups.{gname}.baseline: {baseline!r} is not one of this group's labels "
            f"{[e.label for e in experiments]}"
        )
    factors = [spec["factor"]] if "factor" in spec else keys
    return Group(gname, spec.get("question", ""), spec.get("hypothesis", ""), factors,
                 baseline, experiments)


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
