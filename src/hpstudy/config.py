"""The one typed training config: every knob with its default (nanoGPT style).

Unknown keys are an error; the resolved config is saved with every run and checkpoint,
and its hash names checkpoints so that a checkpoint from a different config is never resumed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any

MODELS = ("resnet_shallow", "resnet18", "resnet18_imagenet", "preact_resnet18", "lenet", "mlp")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("none", "cosine", "step", "exponential", "plateau")
DATA_PATHS = ("device", "dataloader")
AMP_DTYPES = ("bf16", "fp16")
AUGMENTATIONS = ("hflip", "vflip", "crop", "rotate", "jitter", "dihedral")
MIXES = ("none", "cutmix_mixup", "cutmix", "mixup")
# The smallest input side (pixels) a model trains on, checked before any job
# (hpstudy.study_checks; tests/test_models.py steps each model at its minimum and below):
# lenet's two 5x5 convolutions and 2x2 pools leave nothing of a smaller image...
MIN_IMAGE_SIZE = {"lenet": 16}
# ... and BatchNorm cannot train on a batch of one image whose feature maps shrink to 1x1, so
# a batch of one image (batch_size 1, or a last partial batch of one) needs this much more.
MIN_IMAGE_SIZE_ONE_IMAGE = {
    "resnet_shallow": 33,
    "resnet18_imagenet": 33,
    "resnet18": 9,
    "preact_resnet18": 9,
}


TUPLE_FIELDS = ("augment", "norm_mean", "norm_std")


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message says where and why."""


@dataclass(frozen=True)
class TrainConfig:
    # model
    model: str = "resnet_shallow"  # one of MODELS
    upsample_size: int | None = None  # resize inputs on the device before the model (e.g. 224)
    # optimisation
    batch_size: int = 32  # samples per forward pass (per micro-batch)
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    lr: float = 3e-4
    optimizer: str = "adamw"  # one of OPTIMIZERS
    momentum: float = 0.9  # sgd / rmsprop
    nesterov: bool = False  # sgd
    weight_decay: float = 1e-4
    grad_clip: float | None = None  # max global grad norm, None disables
    epochs: int = 50
    # early stopping on validation loss
    patience: int | None = 15  # epochs without improvement; None disables
    min_delta: float = 0.0  # improvement needed to reset patience
    # learning-rate schedule (stepped once per epoch)
    scheduler: str = "none"  # one of SCHEDULERS
    t_max: int | None = None  # cosine period in epochs; None = epochs
    eta_min: float = 0.0  # cosine floor
    step_size: int = 15  # step scheduler period in epochs
    gamma: float = 0.5  # step and exponential decay factor
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    min_lr: float = 0.0  # plateau floor (ReduceLROnPlateau's min_lr)
    # data pipeline
    data_path: str = "device"  # "device": whole set on the device; "dataloader": torch DataLoader
    num_workers: int = 0  # DataLoader workers (dataloader path only)
    pin_memory: bool = True  # DataLoader path, CUDA only
    cleanup_every: int = 0  # gc.collect + CUDA cache release every N batches; 0 never
    train_subset: int | None = None  # draw this many training samples (seeded by `seed`)
    drop_last: bool = False  # drop the last partial training batch (torch DataLoader's flag)
    # fixed input normalisation, one value per channel; None: the training split's statistics
    norm_mean: tuple[float, ...] | None = None
    norm_std: tuple[float, ...] | None = None
    # augmentation (batched tensor ops on the training device)
    augment: tuple[str, ...] = ()  # subset of AUGMENTATIONS
    crop_padding: int = 4
    rotation_degrees: float = 15.0
    color_jitter: float = 0.2  # brightness, contrast and saturation strength
    color_jitter_hue: float = 0.0  # hue shift drawn from [-h, h] turns (torchvision's hue)
    mix: str = "none"  # CutMix/MixUp (classification only)
    mix_alpha: float = 1.0
    # numerics and speed
    mixed_precision: bool = False  # autocast on CUDA; ignored on CPU (device_effects)
    amp_dtype: str = "bf16"  # fp16 adds a GradScaler
    channels_last: bool = True  # CUDA only (device_effects)
    compile: bool = False  # torch.compile the model
    # diagnostics (cheap; every N optimizer steps, 0 disables)
    diagnostics_every: int = 10
    # reproducibility
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}{did_you_mean(unknown, known)}; "
                f"allowed keys: {sorted(known)}"
            )
        values = dict(values)
        for key in TUPLE_FIELDS:  # YAML lists; tuples keep the frozen config hashable
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        # every value is a scalar or a tuple: no deep copy (asdict's recursion was a tenth of
        # a 10,000-experiment dry run)
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in TUPLE_FIELDS:
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    def hash(self) -> str:
        """Short stable hash of the resolved config (sorted JSON)."""
        return config_hash(self.to_dict())

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum_steps

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps of one epoch over `n_train` samples: the batches in groups of
        `grad_accum_steps` (the last group may be shorter, as the trainer steps it)."""
        batches = num_batches(n_train, self.batch_size, self.drop_last)
        return -(-batches // self.grad_accum_steps)


def kept_samples(n: int, percentage: float) -> int:
    """Samples `data_percentage` keeps of `n` (hpstudy.prepare.subsample draws them; the cost
    model and the pre-job data checks count them the same way)."""
    return n if percentage >= 100 else int(round(n * percentage / 100.0))


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches per epoch; `drop_last` leaves out the final partial batch (50,000 CIFAR-10
    images at batch 64: 781 steps, not 782)."""
    return n // batch_size if drop_last else (n + batch_size - 1) // batch_size


# Settings that act on CUDA only, and why they do nothing elsewhere (the report quotes this).
DEVICE_SETTINGS = {
    "mixed_precision": "autocast runs on CUDA only; the runs computed in float32",
    "channels_last": "the channels-last memory format is applied on CUDA only",
    "pin_memory": "pinned memory speeds host-to-GPU copies, on the DataLoader path only",
}


def _flag(value: Any) -> bool:
    """A boolean setting as a config or a summary.csv row holds it (True, "True", 1.0)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "1.0", "yes")
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def device_effects(settings: TrainConfig | dict[str, Any], device_type: str) -> dict[str, bool]:
    """Whether each device-dependent setting takes effect on `device_type` ("cpu", "cuda"):
    the one decision the Trainer and the loaders follow and the report reads back."""
    if isinstance(settings, TrainConfig):
        settings = settings.to_dict()
    cuda = device_type.split(":")[0] == "cuda"
    return {
        "mixed_precision": _flag(settings["mixed_precision"]) and cuda,
        "channels_last": _flag(settings["channels_last"]) and cuda,
        "pin_memory": _flag(settings["pin_memory"])
        and cuda
        and settings["data_path"] == "dataloader",
    }


def ignored_settings(settings: TrainConfig | dict[str, Any], device_type: str) -> dict[str, str]:
    """The device settings a run asked for (true) that did nothing on its device, with why."""
    if isinstance(settings, TrainConfig):
        settings = settings.to_dict()
    effects = device_effects(settings, device_type)
    return {
        name: why
        for name, why in DEVICE_SETTINGS.items()
        if _flag(settings[name]) and not effects[name]
    }


def did_you_mean(unknown: list[str], known) -> str:
    """'; did you mean `batch_size`?' for misspelt names close to a known one (difflib)."""
    close = {
        str(key): m[0]
        for key in unknown
        if (m := difflib.get_close_matches(str(key), sorted(map(str, known)), n=1, cutoff=0.6))
    }
    if not close:
        return ""
    if len(unknown) == 1:
        return f"; did you mean `{next(iter(close.values()))}`?"
    return "; did you mean " + ", ".join(f"`{c}` for `{k}`" for k, c in close.items()) + "?"


def config_hash(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed; expected {allowed}")


def check_config(c: TrainConfig) -> None:
    """Enum, type and cross-field checks, and every numeric range of the JSON schema (read
    from it: the schema owns the ranges), for configs built in Python too."""
    _check_choices(c)
    _check_integers(c)
    _check_numbers(c)
    _check_combinations(c)
    # every numeric range of train_config.schema.yaml, its one owner (a config built in
    # Python, from a checkpoint or a test, never escapes the study files' limits)
    for key, (op, bound, words) in _schema_bounds():
        value = getattr(c, key)
        if _num(value) and not op(value, bound):
            raise ConfigError(f"{key}={value!r} is not allowed; expected {words}")


def _check_choices(c: TrainConfig) -> None:
    """Names: one of the known models, optimizers, schedules, data paths, ..."""
    _require(c.model in MODELS, "model", c.model, f"one of {list(MODELS)}")
    _require(c.optimizer in OPTIMIZERS, "optimizer", c.optimizer, f"one of {list(OPTIMIZERS)}")
    _require(c.scheduler in SCHEDULERS, "scheduler", c.scheduler, f"one of {list(SCHEDULERS)}")
    _require(c.data_path in DATA_PATHS, "data_path", c.data_path, f"one of {list(DATA_PATHS)}")
    _require(c.amp_dtype in AMP_DTYPES, "amp_dtype", c.amp_dtype, f"one of {list(AMP_DTYPES)}")
    _require(c.mix in MIXES, "mix", c.mix, f"one of {list(MIXES)}")
    bad_aug = [a for a in c.augment if a not in AUGMENTATIONS]
    _require(not bad_aug, "augment", list(c.augment), f"a subset of {list(AUGMENTATIONS)}")


def _check_integers(c: TrainConfig) -> None:
    """Counts: whole numbers (never a bool), >= 1 or >= 0, or null where null means off."""
    for key in ("batch_size", "grad_accum_steps", "epochs", "step_size", "plateau_patience"):
        value = getattr(c, key)
        _require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            key,
            value,
            "an integer >= 1",
        )
    for key in ("num_workers", "cleanup_every", "diagnostics_every", "seed", "crop_padding"):
        value = getattr(c, key)
        _require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            key,
            value,
            "an integer >= 0",
        )
    for key in ("patience", "t_max", "train_subset", "upsample_size"):
        value = getattr(c, key)
        _require(
            value is None
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
            key,
            value,
            "null or an integer >= 1",
        )


def _check_numbers(c: TrainConfig) -> None:
    """Rates and factors: finite numbers in their ranges."""
    _require(_num(c.lr) and 0 < c.lr <= 10, "lr", c.lr, "a number in (0, 10]")
    _require(
        _num(c.weight_decay) and c.weight_decay >= 0,
        "weight_decay",
        c.weight_decay,
        "a number >= 0",
    )
    _require(_num(c.momentum) and 0 <= c.momentum < 1, "momentum", c.momentum, "a number in [0, 1)")
    _require(_num(c.gamma) and 0 < c.gamma <= 1, "gamma", c.gamma, "a number in (0, 1]")
    _require(
        _num(c.plateau_factor) and 0 < c.plateau_factor < 1,
        "plateau_factor",
        c.plateau_factor,
        "a number in (0, 1)",
    )
    _require(_num(c.min_delta) and c.min_delta >= 0, "min_delta", c.min_delta, "a number >= 0")
    _require(_num(c.eta_min) and c.eta_min >= 0, "eta_min", c.eta_min, "a number >= 0")
    _require(
        c.grad_clip is None or (_num(c.grad_clip) and c.grad_clip > 0),
        "grad_clip",
        c.grad_clip,
        "null or a number > 0",
    )
    _require(_num(c.min_lr) and c.min_lr >= 0, "min_lr", c.min_lr, "a number >= 0")
    _require(
        _num(c.color_jitter_hue) and 0 <= c.color_jitter_hue <= 0.5,
        "color_jitter_hue",
        c.color_jitter_hue,
        "a number in [0, 0.5] (a fraction of the hue circle)",
    )
    for key in ("rotation_degrees", "color_jitter", "mix_alpha"):
        _require(
            _num(getattr(c, key)) and getattr(c, key) >= 0, key, getattr(c, key), "a number >= 0"
        )


def _check_combinations(c: TrainConfig) -> None:
    """Settings that depend on another one."""
    # Only SGD reads `nesterov`; other optimizers ignore it, so a grid over optimizers can
    # keep one fixed value (the CIFAR-100 sweep fixed "momentum 0.9, nesterov true").
    _require(
        c.nesterov is False or c.optimizer != "sgd" or c.momentum > 0,
        "nesterov",
        c.nesterov,
        "false when optimizer is sgd with momentum 0",
    )
    _require(
        c.upsample_size is None or c.model == "resnet18_imagenet",
        "upsample_size",
        c.upsample_size,
        "null unless model is resnet18_imagenet (the only model with an upsampling layer)",
    )
    _require(
        c.mix == "none" or (_num(c.mix_alpha) and c.mix_alpha > 0),
        "mix_alpha",
        c.mix_alpha,
        "a number > 0 when mix is on (the Beta distribution's parameter)",
    )
    _require(
        (c.norm_mean is None) == (c.norm_std is None),
        "norm_std",
        c.norm_std,
        "set together with norm_mean (both or neither)",
    )
    if c.norm_mean is not None:
        _require(
            len(c.norm_mean) == len(c.norm_std) and all(_num(v) for v in c.norm_mean),
            "norm_mean",
            list(c.norm_mean),
            "one number per channel, as many as norm_std",
        )
        _require(
            all(_num(v) and v > 0 for v in c.norm_std),
            "norm_std",
            list(c.norm_std),
            "one number > 0 per channel",
        )


_BOUNDS = {
    "minimum": (operator.ge, ">="),
    "maximum": (operator.le, "<="),
    "exclusiveMinimum": (operator.gt, ">"),
    "exclusiveMaximum": (operator.lt, "<"),
}


@functools.cache
def _schema_bounds() -> tuple[tuple[str, tuple[Any, float, str]], ...]:
    """(field, (comparison, bound, words)) for every bound in train_config.schema.yaml."""
    import yaml

    from hpstudy import paths

    text = paths.schema("train_config.schema.yaml").read_text()
    schema = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    out = []
    for key, spec in schema["properties"].items():
        if key not in FIELDS:  # study-only keys (effective_batch_size)
            continue
        limits = [(name, spec[name]) for name in _BOUNDS if name in spec]
        words = "a number " + " and ".join(f"{_BOUNDS[n][1]} {b}" for n, b in limits)
        out += [(key, (_BOUNDS[name][0], bound, words)) for name, bound in limits]
    return tuple(out)


def _num(value: Any) -> bool:
    """A real, finite number (YAML's .nan and .inf are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
DEFAULTS = {
    f.name: (list(f.default) if isinstance(f.default, tuple) else f.default)
    for f in dataclasses.fields(TrainConfig)
}
_ = field  # re-exported for callers building variants
