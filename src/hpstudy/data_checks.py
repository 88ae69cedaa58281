"""Checks of a study against its data, before any job: the split it asks for, and what
each experiment's model and batch need of the images the dataset will have once prepared.

The split sizes come from the dataset's known size (hpstudy.cost.dataset_split, prepare's
own rounding) and, for microbeads, from a `Source`: what the workflow knows of the images it
will prepare (the generated set's size, or a folder's density.csv rows). Mistakes that would
fail a job or train nothing raise a StudyError naming the file, the key path, the value and
what is allowed; what runs but deserves a word (a test split of 3 images, one optimizer step
per epoch, rescaled fractions) comes back as warnings, which `hpstudy check` and the workflow
print before any job runs. Checks that relate keys without the data: hpstudy.study_checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpstudy.config import MIN_IMAGE_SIZE, MIN_IMAGE_SIZE_ONE_IMAGE, kept_samples
from hpstudy.cost import DATASET_GEOMETRY, Split, dataset_split
from hpstudy.expand import Experiment, Group
from hpstudy.studyfile import StudyError

MIN_EVAL_IMAGES = 10  # a test or validation split below this is noise: said before any job
FRACTION_SLACK = 0.02  # fractions summing this close to 1 are rescaled with a warning
SPLITS = ("train", "val", "test")
SPLIT_DEFAULTS = {"train": 0.7, "val": 0.15, "test": 0.15}  # hpstudy.prepare.make_split's
PREDEFINED = ("cifar10", "cifar100", "mnist")  # datasets with an official train/test split


@dataclass(frozen=True)
class Source:
    """The microbead images the workflow will prepare: how many, their side and channels
    (None where unknown before reading them, e.g. a folder's channels)."""

    images: int | None = None
    size: int | None = None
    channels: int | None = None


GENERATED = Source(1948, 256, 1)  # config/config.yaml's generated set: hpstudy check's default


@dataclass(frozen=True)
class DataShape:
    """What the prepared dataset will hold, as far as it is known before preparing it."""

    split: Split
    exact: bool  # the sizes are prepare's (else an estimate: a subsampled predefined split)
    size: int | None  # image side before any upsample_size
    channels: int | None
    total: int  # samples in the three splits
    available: int | None  # samples after data_percentage, where known before reading them
    origin: str  # where the sizes come from, in words, for messages
    channels_origin: str  # where the channel count comes from


def split_method(dataset: dict[str, Any]) -> str:
    """The split method a dataset gets: its own, else `predefined` where one exists."""
    default = "predefined" if dataset["name"] in PREDEFINED else "random"
    return (dataset.get("split", {}) or {}).get("method", default)


def check_split_spec(path: Path, dataset: dict[str, Any]) -> list[str]:
    """The split the study asks for, without the data: a method the dataset has, fractions
    that add up to 1. Returns warnings (fractions rescaled a little)."""
    name, spec = dataset["name"], dataset.get("split", {}) or {}
    where = f"{path}: dataset.split"
    method = split_method(dataset)
    if method == "predefined" and name not in PREDEFINED:
        raise StudyError(
            f"{where}.method: 'predefined' is not allowed for dataset {name!r}, which has no "
            f"official train/test split (only {list(PREDEFINED)} do); choose one of "
            "['random', 'ordered']"
        )
    if method != "random":
        return []
    fractions = {k: float(spec.get(k, SPLIT_DEFAULTS[k])) for k in SPLITS}
    total = sum(fractions.values())
    terms = " + ".join(
        f"{k} {fractions[k]:g}" + ("" if k in spec else " (default)") for k in SPLITS
    )
    if total <= 0:
        raise StudyError(f"{where}: {terms} = 0; the fractions must add up to 1")
    scaled = ", ".join(f"{k}: {fractions[k] / total:.3g}" for k in SPLITS)
    if abs(total - 1) > FRACTION_SLACK:
        raise StudyError(
            f"{where}: {terms} = {total:.4g}; the fractions must add up to 1 (they would be "
            f"rescaled without a word); allowed: fractions summing to 1, e.g. {{{scaled}}} "
            "keeps their ratio"
        )
    if abs(total - 1) > 1e-9:
        return [f"{where}: {terms} = {total:.4g}, not 1: rescaled to {{{scaled}}}"]
    return []


def data_shape(dataset: dict[str, Any], source: Source) -> DataShape:
    name, spec = dataset["name"], dataset.get("split", {}) or {}
    channels, native, _ = DATASET_GEOMETRY[name]
    pct = float(dataset.get("data_percentage", 100))
    method = split_method(dataset)
    available = None  # samples after data_percentage, where known
    if name == "microbeads":
        exact = source.images is not None  # else a folder whose count is unknown: about
        images = source.images or GENERATED.images
        channels, native = source.channels, source.size
        origin = f"{images} microbead images" + (
            f" x data_percentage {pct:g}%" if pct < 100 else ""
        )
        available = kept_samples(images, pct)
    else:
        origin = f"dataset {name}" + (f" x data_percentage {pct:g}%" if pct < 100 else "")
        # a subsampled predefined split, or a folder of vgg cells, has sizes near these
        exact = (method == "predefined" and pct >= 100) or (
            method == "ordered" and bool(spec.get("train"))
        )
        images = None
    split = dataset_split(dataset, images)
    if dataset.get("channels"):
        channels_origin = f"dataset.channels: {dataset['channels']}"
    elif name == "microbeads":
        channels_origin = "the microbead images"
    else:
        channels_origin = f"dataset {name}"
    return DataShape(
        split=split,
        exact=exact,
        size=dataset.get("image_size") or native,
        channels=dataset.get("channels") or channels,
        total=split.train + split.val + split.test,
        available=available,
        origin=origin,
        channels_origin=channels_origin,
    )


def check_data(
    path: Path,
    dataset: dict[str, Any],
    groups: dict[str, Group],
    specs: dict[str, dict[str, Any]],
    base: dict[str, Any],
    source: Source,
) -> list[str]:
    """Every check of the study against its data; returns the warnings."""
    shape = data_shape(dataset, source)
    warnings = check_split_sizes(path, dataset, shape)
    few_steps: list[str] = []  # one line for the study, not one per group
    for group in groups.values():
        warnings += check_group(path, group, specs[group.name], base, shape, few_steps)
    if few_steps:
        shown = ", ".join(few_steps[:5]) + (
            f" and {len(few_steps) - 5:,} more" if few_steps[5:] else ""
        )
        warnings.append(
            f"{path}: groups: fewer than 2 optimizer steps per epoch on the "
            f"{'about ' if not shape.exact else ''}{shape.split.train}-image training split: "
            f"{shown}; such runs hardly train: use a smaller batch_size or grad_accum_steps"
        )
    return warnings


def check_split_sizes(path: Path, dataset: dict[str, Any], shape: DataShape) -> list[str]:
    """No empty split where prepare would refuse one; a word on a tiny test or val split."""
    spec, split = dataset.get("split", {}) or {}, shape.split
    about = "" if shape.exact else "about "
    warnings = []
    if spec.get("method") == "ordered" and shape.available is not None and shape.exact:
        if shape.total > shape.available:
            raise StudyError(
                f"{path}: dataset.split: the ordered counts train {split.train} + val "
                f"{split.val} + test {split.test} = {shape.total} need more images than the "
                f"{shape.available} there are ({shape.origin}); allowed: counts adding up to "
                f"at most {shape.available}"
            )
    for part in SPLITS:
        n = getattr(split, part)
        asked = part != "val" or spec.get("val", 1) != 0  # val: 0 is a choice (no hold-out)
        key = f"dataset.split.{part}" if part in spec else "dataset.split"
        if part not in spec and "data_percentage" in dataset:
            key = "dataset.data_percentage"
        if n == 0 and part != "val" and shape.exact:
            raise StudyError(
                f"{path}: {key}: the {part} split would be empty ({shape.origin} -> "
                f"{split.train}/{split.val}/{split.test} train/val/test); allowed: at least one "
                f"{part} image: raise data_percentage or dataset.split.{part}"
            )
        if asked and n < MIN_EVAL_IMAGES and part != "train":
            warnings.append(
                f"{path}: {key}: the {part} split has {about}{n} image(s) ({shape.origin} -> "
                f"{split.train}/{split.val}/{split.test} train/val/test): "
                + (
                    "its metrics are noise"
                    if part == "test"
                    else "early stopping and the best epoch follow noise"
                )
                + f"; give it at least {MIN_EVAL_IMAGES} (raise data_percentage or "
                f"dataset.split.{part})"
            )
    return warnings


def origin(key: str, exp: Experiment, spec: dict[str, Any], base: dict[str, Any]) -> str:
    """The key path that set `key` for an experiment: its override, the group's `fixed`, or
    `base` (the TrainConfig default otherwise)."""
    if key in exp.overrides:
        if "grid" in spec:
            return f"groups.{exp.group}.grid.{key} (experiment {exp.id})"
        index = next(i for i, o in enumerate(spec["list"]) if o == exp.overrides)
        return f"groups.{exp.group}.list[{index}].{key}"
    if key in spec.get("fixed", {}):
        return f"groups.{exp.group}.fixed.{key}"
    if key in base:
        return f"base.{key}"
    return f"{key} (the default, in groups.{exp.group}, experiment {exp.id})"


def check_group(
    path: Path,
    group: Group,
    spec: dict[str, Any],
    base: dict[str, Any],
    shape: DataShape,
    few_steps: list[str],
) -> list[str]:
    """Each experiment of a group against the data: the model's smallest image, one
    normalisation value per channel, optimizer steps per epoch (an experiment with fewer
    than 2 is added to `few_steps`). Returns the warnings."""
    warnings: list[str] = []
    for exp in group.experiments:
        cfg = exp.config
        size = cfg.upsample_size or shape.size
        if size is not None:
            _check_image_size(path, exp, spec, base, shape, size)
        _check_channels(path, exp, spec, base, shape)
        n_train = shape.split.train
        if cfg.train_subset is not None:
            if cfg.train_subset > n_train and shape.exact:
                # said, not refused: tests/test_faults.py relies on this one run failing
                # inside its job, to show a study going on past a failed run
                warnings.append(
                    f"{path}: {origin('train_subset', exp, spec, base)}: train_subset="
                    f"{cfg.train_subset} exceeds the {n_train} training images "
                    f"({shape.origin}): that run will fail when it loads its data; allowed: "
                    f"at most {n_train}"
                )
            n_train = min(cfg.train_subset, n_train)
        steps = cfg.steps_per_epoch(n_train)
        if steps == 0 and shape.exact:
            raise StudyError(
                f"{path}: {origin('batch_size', exp, spec, base)}: batch_size="
                f"{cfg.batch_size} with drop_last: true leaves 0 optimizer steps per epoch on "
                f"the {n_train}-image training split ({shape.origin}): its only batch is "
                f"partial and dropped, so nothing trains; allowed: batch_size <= {n_train}, "
                "or drop_last: false"
            )
        if steps < 2:
            few_steps.append(f"{exp.id} ({steps})")
        if size is not None and shape.exact:
            _check_one_image_batch(path, exp, spec, base, n_train, size, shape)
    return warnings


def _check_image_size(path, exp, spec, base, shape, size) -> None:
    least = MIN_IMAGE_SIZE.get(exp.config.model, 1)
    if size >= least:
        return
    seen = f"upsample_size {size}" if exp.config.upsample_size else f"dataset.image_size {size}"
    raise StudyError(
        f"{path}: {origin('model', exp, spec, base)}: model {exp.config.model!r} needs images "
        f"of at least {least}x{least} pixels, but it would see {size}x{size} ({seen}); "
        f"allowed: dataset.image_size >= {least}, or another model"
    )


def _check_channels(path, exp, spec, base, shape) -> None:
    cfg = exp.config
    if cfg.norm_mean is None or shape.channels is None:
        return
    for key in ("norm_mean", "norm_std"):
        values = list(getattr(cfg, key))
        if len(values) != shape.channels:
            raise StudyError(
                f"{path}: {origin(key, exp, spec, base)}: {values} has {len(values)} "
                f"value(s), but the images have {shape.channels} channel(s) "
                f"({shape.channels_origin}); allowed: {shape.channels} value(s), one per channel"
            )


def _check_one_image_batch(path, exp, spec, base, n_train, size, shape) -> None:
    """BatchNorm cannot train on one image whose feature maps shrink to 1x1: a batch_size of
    1, or a last partial batch of one image, fails mid-epoch at small image sizes."""
    cfg = exp.config
    least = MIN_IMAGE_SIZE_ONE_IMAGE.get(cfg.model)
    if least is None or size >= least:
        return
    if cfg.batch_size == 1:
        why = "batch_size 1 trains on one image at a time"
        fix = "batch_size >= 2"
    elif not cfg.drop_last and n_train % cfg.batch_size == 1:
        full = n_train // cfg.batch_size
        why = (
            f"the last batch of each epoch holds one image ({n_train} training images = "
            f"{full} x {cfg.batch_size} + 1; {shape.origin})"
        )
        fix = "drop_last: true, or a batch_size that leaves more than one image over"
    else:
        return
    raise StudyError(
        f"{path}: {origin('batch_size', exp, spec, base)}: batch_size={cfg.batch_size}: "
        f"{why}, and {cfg.model}'s BatchNorm cannot train on a single {size}x{size} image; "
        f"allowed: {fix}, or image size >= {least}"
    )
