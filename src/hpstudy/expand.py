"""A study's groups as experiments: overrides over the base config, labels, ids, config ids.

Each group is a `grid` (cartesian product of value lists) or a `list` of overrides, applied
over `base` and the group's `fixed` settings. Every experiment gets a readable, stable id
`{group}-{label}` where the label spells the overridden values (`batch_size-bs16`), and a
config id: the hash of its resolved config without the seed, the folder its runs train in
(experiments of different groups with the same config id share their runs).
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpstudy.config import DEFAULTS, ConfigError, TrainConfig, config_hash
from hpstudy.studyfile import StudyError, choices, validate

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


def build_config(path: Path, where: str, build):
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


def count_experiments(specs: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Experiments per group from the sizes alone (a grid's product, a list's length), before
    anything is expanded: a 40 x 40 x 40 grid is 64,000 at once, not after minutes."""
    counts = {}
    for gname, spec in specs.items():
        if "grid" in spec:
            counts[gname] = math.prod(len(values) for values in spec["grid"].values())
        else:
            counts[gname] = len(spec["list"])
    return counts


def grid_shape(spec: dict[str, Any]) -> str:
    """'lr 40 x batch_size 40 x wd 40' for a grid group, '25 overrides' for a list."""
    if "grid" not in spec:
        return f"{len(spec['list'])} overrides"
    return " x ".join(f"{k} {len(v)}" for k, v in spec["grid"].items())


def expand_groups(
    path: Path, specs: dict[str, dict[str, Any]], base: dict[str, Any]
) -> dict[str, Group]:
    """Every group of a study file, expanded; experiment ids must be safe in paths and
    cluster job names, and unique across the study."""
    groups: dict[str, Group] = {}
    seen: dict[str, str] = {}
    for gname, gspec in specs.items():
        group = expand_group(path, gname, gspec, base)
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
    return groups


def expand_group(path: Path, gname: str, spec: dict[str, Any], base: dict[str, Any]) -> Group:
    """One group's experiments: its grid's cartesian product or its list, each override over
    `base` and the group's `fixed` settings."""
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
    # labels first: a repeated label or a wrong baseline is said before thousands of
    # configs are built
    labels = [make_label(over) for over in overrides]
    duplicates = [label for label, n in collections.Counter(labels).items() if n > 1]
    if duplicates:
        raise StudyError(
            f"{path}: groups.{gname}: duplicate experiment id '{gname}-{duplicates[0]}'; give "
            "the overrides distinct values or split them into another group"
        )
    baseline = spec.get("baseline")
    if baseline is not None and baseline not in set(labels):
        raise StudyError(
            f"{path}: groups.{gname}.baseline: {baseline!r} is not one of this group's labels "
            f"{choices(baseline, labels)}"
        )
    experiments = []
    for i, (over, label) in enumerate(zip(overrides, labels, strict=True)):
        if "grid" in spec:
            where = f"groups.{gname}.grid (experiment {gname}-{label})"
        else:
            where = f"groups.{gname}.list[{i}]"
            validate(over, "train_config.schema.yaml", str(path), ("groups", gname, "list", i))
        values = resolve_batch(path, where, base, fixed, over, {"seed": 0})
        cfg = build_config(path, where, lambda values=values: TrainConfig.from_dict(values))
        experiments.append(Experiment(f"{gname}-{label}", gname, label, over, cfg))
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


def _label_value(value: Any) -> str:
    """A value as it is spelled in a label: on/off, 1e-3, none, a+b."""
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
        return "+".join(_label_value(v) for v in value) or "none"
    return str(value)


def make_label(overrides: dict[str, Any]) -> str:
    """Readable label of an override set, e.g. {'batch_size': 16, 'lr': 1e-3} -> 'bs16_lr1e-3'.
    Falls back to a short hash when the spelled label would be long or unsafe."""
    if not overrides:
        return "base"
    parts = [ABBREV.get(k, k) + _label_value(v) for k, v in overrides.items()]
    label = "_".join(parts)
    if len(label) > MAX_LABEL or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", label):
        label = "h" + config_hash(overrides)[:8]
    return label
