"""What a study costs before it runs: training FLOPs, and time from a short calibration.

For every distinct run shape of a study (model, input size, channels, outputs, batch size)
the estimate needs two numbers:

- FLOPs of one training sample (forward + backward), counted by torch.utils.flop_counter on
  the real model at the study's image size (device independent, cached);
- seconds of one optimizer step at the run's batch size on *this* machine: a calibration of
  a few real training steps (random data of the right shape, the real model and optimizer),
  cached per machine, device and thread count in ``~/.cache/hpstudy/calibration.json``
  (``HPSTUDY_CACHE_DIR`` moves it; hpstudy.calibration).

A run's training time is then ``epochs x ceil(n_train / batch_size) x seconds_per_step`` (an
upper bound: early stopping only shortens it), its wall time adds evaluation and a fixed
start-up. ``hpstudy calibrate STUDY.yaml --out gpu.json`` (`calibrate`), run on a GPU node,
writes a *device profile*: the same calibration for that device, which ``--device-profile``
(and the cluster walltimes, ``profiles/walltime.yaml``) then use instead of this machine.

    hpstudy check config/studies/bottleneck.yaml     # checks it and prints the cost
    hpstudy check config/studies/quick.yaml --device-profile gpu.json
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpstudy.calibration import Calibration, Shape, load_file, save_file
from hpstudy.config import kept_samples
from hpstudy.formatting import approx_duration, flops_text

EVAL_COST = 1 / 3  # a forward pass costs about a third of forward + backward + step
LONG_ON_CPU_S = 3600.0  # a CPU-only machine warns about studies longer than this

# Samples and image geometry of the datasets whose size is known without reading them.
DATASET_SIZES = {  # name: (train, test) samples of the predefined split, or total
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "mnist": (60_000, 10_000),
    "vgg_cells": (200, 0),
}
DATASET_GEOMETRY = {  # name: (channels, native image size, outputs)
    "microbeads": (1, 256, 1),
    "vgg_cells": (1, 256, 1),  # the blue channel of the RGB files (hpstudy.datasets)
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "mnist": (1, 28, 10),
}


# --------------------------------------------------------------------------- run shapes


@dataclass
class Split:
    train: int
    val: int
    test: int


def dataset_split(dataset: dict[str, Any], n_images: int | None = None) -> Split:
    """Samples per split after data_percentage, as hpstudy.prepare would make them (the same
    rounding: exact for microbeads and ordered splits, an estimate where data_percentage
    subsamples a predefined split). `n_images`: the microbead folder's images (the generated
    set's n_images by default)."""
    name = dataset["name"]
    pct = float(dataset.get("data_percentage", 100))
    spec = dataset.get("split", {}) or {}
    if name in ("cifar10", "cifar100", "mnist"):
        train, test = (kept_samples(n, pct) for n in DATASET_SIZES[name])
        method = spec.get("method", "predefined")
        if method == "predefined":
            val = round(train * float(spec.get("val", 0.1)))
            return Split(train - val, val, test)
        total = train + test
    elif name == "vgg_cells":
        total = kept_samples(DATASET_SIZES[name][0], pct)
    else:
        total = kept_samples(n_images or 1948, pct)
    if spec.get("method") == "ordered":  # counts; test from the end, train the rest if unset
        train, val, test = (int(spec.get(k, 0)) for k in ("train", "val", "test"))
        return Split(train or (max(total - val - test, 0) if test else 0), val, test)
    fractions = [float(spec.get(k, d)) for k, d in (("train", 0.7), ("val", 0.15), ("test", 0.15))]
    scale = sum(fractions) or 1.0
    train, val = (round(total * (f / scale)) for f in fractions[:2])
    return Split(train, val, total - train - val)


def run_shape(cfg, dataset: dict[str, Any]) -> Shape:
    from hpstudy.datasets import DATASET_TASKS

    channels, native, outputs = DATASET_GEOMETRY[dataset["name"]]
    channels = int(dataset.get("channels") or channels)
    size = int(cfg.upsample_size or dataset.get("image_size") or native)
    return Shape(
        cfg.model,
        channels,
        size,
        outputs,
        int(cfg.batch_size),
        DATASET_TASKS.get(dataset["name"], "classification"),
    )


# --------------------------------------------------------------------------- estimates


@dataclass
class RunEstimate:
    experiment: str
    group: str
    epochs: int
    n_train: int
    flops: float  # training FLOPs of the whole run
    train_s: float  # epochs x steps x seconds per step
    wall_s: float  # + evaluation + start-up
    shared: bool = False  # an earlier experiment has the same configuration: trained once


def estimate_run(
    cfg,
    dataset: dict[str, Any],
    calibration: Calibration,
    n_images: int | None = None,
    experiment: str = "",
    group: str = "",
) -> RunEstimate:
    split = dataset_split(dataset, n_images)
    n_train = min(cfg.train_subset, split.train) if cfg.train_subset else split.train
    shape = run_shape(cfg, dataset)
    step = calibration.step(shape, bool(cfg.mixed_precision))
    steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    train_s = steps * step["seconds_per_step"]
    per_sample = step["seconds_per_step"] / cfg.batch_size
    eval_s = (split.val * cfg.epochs + split.test) * per_sample * EVAL_COST
    flops = step["flops_per_sample"] * n_train * cfg.epochs
    return RunEstimate(
        experiment,
        group,
        cfg.epochs,
        n_train,
        flops,
        train_s,
        train_s + eval_s + calibration.startup_s(),
    )


def estimate_study(
    study, calibration: Calibration, n_images: int | None = None
) -> list[RunEstimate]:
    """One estimate per experiment (every seed of it costs the same); an experiment whose
    configuration an earlier one already trains is marked `shared` and not counted in
    totals (each distinct configuration is trained once per study)."""
    import dataclasses

    out, seen = [], {}
    for e in study.experiments:
        key = e.config_id
        if key in seen:
            out.append(dataclasses.replace(seen[key], experiment=e.id, group=e.group, shared=True))
            continue
        seen[key] = estimate_run(e.config, study.dataset, calibration, n_images, e.id, e.group)
        out.append(seen[key])
    return out


def distinct(estimates: list[RunEstimate]) -> list[RunEstimate]:
    """The estimates of the runs that are trained: one per distinct configuration."""
    return [e for e in estimates if not e.shared]


def where(calibration: Calibration) -> str:
    return calibration.machine


def report(study, estimates: list[RunEstimate], calibration: Calibration, parallel: int = 1) -> str:
    """Per group and in total: runs, training FLOPs, expected time."""
    seeds = len(study.seeds)
    lines = [
        f"{study.name}: cost estimate on {where(calibration)} (upper bound: every epoch "
        f"runs; {seeds} seed(s) per experiment)",
        f"  {'group':<24} {'runs':>5} {'train FLOPs':>12} {'train time':>11} {'wall time':>10}",
    ]
    for group in study.groups:
        rows = [e for e in estimates if e.group == group]
        lines.append(
            f"  {group:<24} {len(rows) * seeds:>5} "
            f"{flops_text(sum(e.flops for e in rows) * seeds):>12} "
            f"{approx_duration(sum(e.train_s for e in rows) * seeds):>11} "
            f"{approx_duration(sum(e.wall_s for e in rows) * seeds):>10}"
        )
    trained = distinct(estimates)
    total_wall = sum(e.wall_s for e in trained) * seeds
    lines.append(
        f"  {'total (distinct configs)':<24} {len(trained) * seeds:>5} "
        f"{flops_text(sum(e.flops for e in trained) * seeds):>12} "
        f"{approx_duration(sum(e.train_s for e in trained) * seeds):>11} "
        f"{approx_duration(total_wall):>10}"
    )
    if parallel > 1:
        lines.append(
            f"  with {parallel} runs at once: about {approx_duration(total_wall / parallel)}"
        )
    warning = long_warning(study, total_wall / max(parallel, 1), calibration)
    if warning:
        lines.append("  " + warning)
    return "\n".join(lines)


def long_warning(study, seconds: float, calibration: Calibration) -> str | None:
    if calibration.device.startswith("cuda") or seconds <= LONG_ON_CPU_S:
        return None
    return (
        f"WARNING: {study.name} is expected to take {approx_duration(seconds)} on this CPU-only "
        "machine; run it on a GPU (profiles/local, pbs, slurm) or trim it (seeds, epochs, "
        "data_percentage)"
    )


def one_line(
    study,
    calibration: Calibration,
    n_images: int | None = None,
    parallel: int = 1,
    progress=None,
) -> str:
    """The workflow's start line for one study. `progress` (hpstudy.rounds.progress) of a
    sequential study: the runs planned so far (round k), not max seeds of everything."""
    estimates = distinct(estimate_study(study, calibration, n_images))
    if progress is None:
        seeds = [len(study.seeds)] * len(estimates)
        runs = f"{sum(seeds)} runs"
    else:
        seeds = [progress.seeds[study.experiment(e.experiment).config_id] for e in estimates]
        runs = progress.text()
    wall = sum(e.wall_s * n for e, n in zip(estimates, seeds, strict=True))
    line = (
        f"hpstudy: {study.name}: {runs}, "
        f"{flops_text(sum(e.flops * n for e, n in zip(estimates, seeds, strict=True)))} of "
        f"training, about {approx_duration(wall / max(parallel, 1))} on {calibration.device}"
        + (f" with {parallel} runs at once" if parallel > 1 else "")
        + f" (estimate: {calibration.machine}; `hpstudy check {study.path}` for the breakdown)"
    )
    warning = long_warning(study, wall / max(parallel, 1), calibration)
    return line + ("\nhpstudy: " + warning if warning else "")


# --------------------------------------------------------------------------- walltime


@dataclass
class WalltimePolicy:
    """profiles/walltime.yaml: how a cluster train job's walltime follows its estimate."""

    factor: float = 3.0
    min_minutes: float = 10.0
    max_minutes: float | None = 2880.0
    device_profile: str | None = None


def load_policy(path: str | os.PathLike | None) -> WalltimePolicy:
    import yaml

    path = os.environ.get("HPSTUDY_WALLTIME") or path
    if not path or not Path(path).is_file():
        return WalltimePolicy()
    data = yaml.safe_load(Path(path).read_text()) or {}
    known = set(WalltimePolicy.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown walltime settings {unknown}; known: {sorted(known)}")
    policy = WalltimePolicy(**data)
    if policy.device_profile and not Path(policy.device_profile).is_absolute():
        policy.device_profile = str(Path(path).parent / policy.device_profile)
    return policy


def walltime_minutes(run_wall_s: float, n_runs: int, attempt: int, policy: WalltimePolicy) -> int:
    """A train job's walltime: its runs' estimate x the safety factor, at least the minimum,
    x attempt (a retry after a walltime kill asks for more), at most the site's maximum."""
    minutes = max(run_wall_s * n_runs / 60 * policy.factor, policy.min_minutes) * attempt
    if policy.max_minutes:
        minutes = min(minutes, policy.max_minutes)
    return max(1, math.ceil(minutes))


# --------------------------------------------------------------------------- device profiles


def calibrate(
    studies, out: str | os.PathLike, threads: int = 1, n_images: int | None = None
) -> Calibration:
    """Measure every run shape of `studies` on this machine and write them to `out` as a
    device profile (this machine's entries only), for --device-profile elsewhere."""
    out = Path(out)
    cal = Calibration(threads=threads, path=out)
    for study in studies:
        estimate_study(study, cal, n_images)
    data = load_file(out)
    data["machines"] = {cal.machine: data["machines"].get(cal.machine, {})}
    save_file(out, data)
    cal.data = data
    return cal
