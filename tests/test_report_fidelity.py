"""The shipped studies reproduce their lab reports value by value (issue 14), and the config
knobs that the reports need (plateau min_lr, hue jitter, drop_last, fixed normalisation, no
validation hold-out) do what they say."""

import json
import math

import pytest
import torch
from conftest import REPO
from torchvision.transforms.v2 import functional as TF

from hpstudy.augment import color_jitter, shift_hue
from hpstudy.config import ConfigError, TrainConfig
from hpstudy.loaders import DeviceLoader, TorchLoader, num_batches
from hpstudy.optim import make_optimizer, make_scheduler
from hpstudy.study import load_study
from hpstudy.studyfile import StudyError
from hpstudy.task import input_normalisation
from hpstudy.train import run

STUDIES = REPO / "config" / "studies"


def study(name):
    return load_study(STUDIES / f"{name}.yaml")


def group_configs(name, group):
    return {e.label: e.config for e in study(name).groups[group].experiments}


def deviations_text(name):
    return json.dumps(study(name).deviations)


# -- bottleneck (reports 000 and 001) ---------------------------------------------------------
def test_bottleneck_tables_and_snippets():
    s = study("bottleneck")
    for cfg in (e.config for e in s.experiments):
        assert (cfg.optimizer, cfg.lr if cfg.lr == 3e-4 else 3e-4, cfg.weight_decay) == (
            "adamw",
            3e-4,
            1e-4,
        )  # AdamW(lr=3e-4, weight_decay=1e-4)
        assert (cfg.epochs, cfg.patience) == (50, 15)
    assert s.base.get("scheduler", "none") == "none" and "base.scheduler" in deviations_text(
        "bottleneck"
    )
    # the report's scheduler snippets
    sched = {
        c.scheduler: c
        for c in group_configs("bottleneck", "scheduler").values()
        if c.batch_size == 32
    }
    assert (sched["cosine"].t_max or sched["cosine"].epochs, sched["cosine"].eta_min) == (50, 1e-6)
    assert (
        sched["plateau"].plateau_factor,
        sched["plateau"].plateau_patience,
        sched["plateau"].min_lr,
    ) == (0.5, 10, 1e-6)
    assert (sched["step"].step_size, sched["step"].gamma) == (15, 0.5)
    assert sched["exponential"].gamma == 0.95


@pytest.mark.parametrize(
    "group, report_pairs, key",
    [
        (
            "grad_accumulation",
            {(32, 1), (16, 2), (8, 4), (64, 1), (32, 2), (16, 4)},
            ("batch_size", "grad_accum_steps"),
        ),
        (
            "data_loading",
            {(0, 3), (2, 3), (6, 3), (6, 5), (6, 10), (12, 5), (18, 5)},
            ("num_workers", "cleanup_every"),
        ),
        (
            "lr_scaling",
            {(32, 3e-4), (64, 6e-4), (128, 1.2e-3), (32, 1e-4), (32, 1e-3), (128, 3e-4)},
            ("batch_size", "lr"),
        ),
        ("batch_size", {(b,) for b in (16, 32, 64, 96, 128, 192, 256)}, ("batch_size",)),
    ],
)
def test_bottleneck_has_every_reported_level_and_marks_its_additions(group, report_pairs, key):
    ours = {
        label: tuple(getattr(c, k) for k in key)
        for label, c in group_configs("bottleneck", group).items()
    }
    assert report_pairs <= set(ours.values())
    added = [label for label, value in ours.items() if value not in report_pairs]
    text = deviations_text("bottleneck")
    for label in added:  # every addition is declared, and rendered under "Design"
        assert label in text, f"{group}-{label} is not in the report but not marked as added"
    source = (STUDIES / "bottleneck.yaml").read_text().splitlines()
    for value in (v for label, v in ours.items() if label in added):
        line = next(
            ln for ln in source if all(f"{k}: {x}" in ln for k, x in zip(key, value, strict=True))
        )
        assert "added" in line  # and the study file says so at the value


# -- CIFAR-100 grid and follow-ups (report 002) -----------------------------------------------
def test_cifar100_grid_runs_the_reports_models_and_numerics():
    s = study("cifar100_grid")
    models = {e.config.model for e in s.experiments}
    assert models == {"resnet18_imagenet", "preact_resnet18"}  # ImageNet stem, "unmodified"
    for c in (e.config for e in s.experiments):
        assert c.upsample_size is None  # native 32 px
        assert c.color_jitter_hue > 0  # the report's jitter includes hue
        assert (c.mixed_precision, c.amp_dtype) == (True, "fp16")  # GradScaler
        assert (c.plateau_patience, c.plateau_factor, c.t_max) == (5, 0.1, 50)
        assert (c.epochs, c.patience, c.min_delta, c.batch_size) == (50, 3, 0.01, 256)
        assert (c.weight_decay, c.momentum, c.nesterov) == (1e-3, 0.9, True)
    text = deviations_text("cifar100_grid")
    assert "hue" in text and "split" in text


def test_cifar100_followup_says_what_could_not_be_reproduced():
    text = deviations_text("cifar100_followup")
    assert "pretrained" in text and "patience" in text
    extended = group_configs("cifar100_followup", "extended")
    assert extended["ep100_tmax100_pat15"].patience == 15
    up = group_configs("cifar100_followup", "upsampling")["resnet18_imagenet_up224"]
    assert (up.optimizer, up.lr, up.weight_decay, up.patience, up.t_max) == (
        "adam",
        1e-3,
        1e-4,
        15,
        50,
    )


# -- CIFAR-10 worksheet (report 004) ----------------------------------------------------------
def test_cifar10_resnet18_is_the_worksheets_protocol():
    s = study("cifar10_resnet18")
    assert s.dataset["split"]["method"] == "predefined" and s.dataset["split"]["val"] == 0
    cfgs = group_configs("cifar10_resnet18", "batch_lr")
    for c in cfgs.values():
        assert c.drop_last and c.patience is None
        assert c.norm_mean == (0.4914, 0.4822, 0.4465)
        assert c.norm_std == (0.2023, 0.1994, 0.2010)
        assert (c.momentum, c.weight_decay, c.scheduler, c.epochs) == (0.9, 5e-4, "cosine", 25)
    steps = [num_batches(50_000, c.batch_size, c.drop_last) for c in cfgs.values()]
    assert steps == [781, 390]  # "Training Batches 781 / 390"


# -- the knobs --------------------------------------------------------------------------------
@pytest.mark.parametrize("n, batch", [(50, 16), (48, 16), (7, 8)])
def test_drop_last_drops_only_the_partial_batch_on_both_paths(n, batch):
    images = torch.arange(n * 3 * 2 * 2, dtype=torch.uint8).view(n, 3, 2, 2)
    targets = torch.arange(n)
    idx = torch.arange(n)
    dev = DeviceLoader(images, targets, idx, batch, torch.device("cpu"), True, 1, drop_last=True)
    tl = TorchLoader(images, targets, idx, batch, torch.device("cpu"), True, 1, drop_last=True)
    assert len(dev) == len(tl) == n // batch
    for (xa, ya), (xb, yb) in zip(dev.epoch(0), tl.epoch(0), strict=True):
        assert len(ya) == batch and torch.equal(ya, yb) and torch.equal(xa, xb)
    keep = DeviceLoader(images, targets, idx, batch, torch.device("cpu"), True, 1)
    assert len(keep) == math.ceil(n / batch)


def test_plateau_min_lr_is_a_floor():
    model = torch.nn.Linear(2, 1)
    for floor in (0.0, 1e-4):
        cfg = TrainConfig(
            scheduler="plateau", plateau_patience=1, plateau_factor=0.1, lr=1e-2, min_lr=floor
        )
        opt = make_optimizer(cfg, model)
        sched = make_scheduler(cfg, opt)
        for _ in range(20):
            sched.step(1.0)  # never improves
        lr = opt.param_groups[0]["lr"]
        assert lr == pytest.approx(floor) if floor else lr < 1e-6


def test_hue_shift_equals_torchvisions_adjust_hue_and_jitter_uses_it():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 6, 6, generator=gen)
    shifts = torch.tensor([0.1, -0.3, 0.5, 0.0, -0.05])
    ref = torch.stack([TF.adjust_hue(x[i], float(shifts[i])) for i in range(5)])
    assert torch.allclose(shift_hue(x, shifts), ref, atol=1e-5)
    plain = color_jitter(x, torch.Generator().manual_seed(1), 0.0, 0.0)
    assert torch.equal(plain, x)
    hued = color_jitter(x, torch.Generator().manual_seed(1), 0.0, 0.2)
    assert not torch.allclose(hued, x, atol=1e-3)
    # a hue shift keeps each pixel's value (max channel) and saturation
    assert torch.allclose(hued.max(1).values, x.max(1).values, atol=1e-5)


def test_fixed_normalisation_replaces_the_computed_statistics():
    manifest = {"mean": [0.5], "std": [0.25]}
    assert input_normalisation(TrainConfig(), manifest) == ([0.5], [0.25])
    cfg = TrainConfig(norm_mean=(0.1,), norm_std=(0.2,))
    assert input_normalisation(cfg, manifest) == ([0.1], [0.2])
    with pytest.raises(ValueError, match="one per channel"):
        input_normalisation(TrainConfig(norm_mean=(0.1, 0.2, 0.3), norm_std=(1, 1, 1)), manifest)
    with pytest.raises(ConfigError, match="norm_std"):
        TrainConfig(norm_mean=(0.1,))
    with pytest.raises(ConfigError, match="color_jitter_hue"):
        TrainConfig(color_jitter_hue=0.7)


def test_fixed_normalisation_changes_training(prepared, tmp_path):
    common = {"epochs": 1, "batch_size": 16, "diagnostics_every": 0}
    a = run(
        TrainConfig.from_dict(common),
        prepared,
        tmp_path / "a",
        tmp_path / "a.ckpt",
        log=lambda m: None,
    )
    b = run(
        TrainConfig.from_dict({**common, "norm_mean": [0.9], "norm_std": [0.05]}),
        prepared,
        tmp_path / "b",
        tmp_path / "b.ckpt",
        log=lambda m: None,
    )
    assert a["test_mse"] != b["test_mse"]


def test_no_validation_hold_out_tests_the_final_weights(microbead_dir, tmp_path):
    from hpstudy.prepare import prepare

    spec = {
        "name": "microbeads",
        "image_size": 32,
        "split": {"method": "random", "train": 0.8, "val": 0, "test": 0.2, "seed": 1},
    }
    prepare(spec, microbead_dir, tmp_path / "p.pt", tmp_path / "manifest.json")
    cfg = TrainConfig.from_dict(
        {"epochs": 2, "batch_size": 16, "patience": None, "diagnostics_every": 0, "drop_last": True}
    )
    metrics = run(
        cfg, tmp_path / "p.pt", tmp_path / "run", tmp_path / "run.ckpt", log=lambda m: None
    )
    assert metrics["tested_weights"] == "final" and math.isfinite(metrics["test_r2"])
    assert metrics["optimizer_steps"] == 2 * (metrics["n_train"] // 16)  # drop_last


def test_patience_without_validation_split_is_refused_at_load_time(tmp_path):
    path = tmp_path / "noval.yaml"
    path.write_text(
        "name: noval\ndataset:\n  name: microbeads\n"
        "  split: {method: random, train: 0.8, val: 0, test: 0.2}\n"
        "base: {epochs: 1, patience: 5}\ngroups:\n  g:\n    grid: {lr: [0.001]}\n"
    )
    with pytest.raises(StudyError, match=r"patience=5.*split.val is 0.*patience: null"):
        load_study(path)
