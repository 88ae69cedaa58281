"""The shipped studies express the lab reports' designs exactly (issue 3), with traceable ids,
and `snakemake -n` plans one train job per distinct configuration."""

import itertools
import re

import pytest
from conftest import REPO, run_snakemake, write_workdir
from fake_datasets import write_cifar10, write_cifar100, write_vgg_cells

from hpstudy.expand import make_label
from hpstudy.study import load_study

STUDIES = REPO / "config" / "studies"
SHIPPED = [
    "bottleneck",
    "bottleneck_quick",
    "cifar100_grid",
    "cifar100_followup",
    "cifar10_resnet18",
    "vgg_cells",
    "vgg_cells_ci",
]


def study(name):
    return load_study(STUDIES / f"{name}.yaml")


def configs(name, group):
    return [e.config for e in study(name).groups[group].experiments]


@pytest.mark.parametrize("name", SHIPPED)
def test_ids_are_unique_traceable_and_groups_documented(name):
    s = study(name)
    ids = [e.id for e in s.experiments]
    assert len(ids) == len(set(ids))
    for exp in s.experiments:
        assert exp.id == f"{exp.group}-{make_label(exp.overrides)}"
        assert not exp.label.startswith("h")  # spelled out, not a hash fallback
        for key, value in exp.overrides.items():  # the id's settings are the run's settings
            got = getattr(exp.config, key)
            assert (list(got) if isinstance(got, tuple) else got) == value
    for group in s.groups.values():
        assert group.question.strip(), f"{name}.{group.name} has no question"
        assert group.baseline in [e.label for e in group.experiments]


def test_bottleneck_is_the_reports_35_experiments():
    s = study("bottleneck")
    assert [len(g.experiments) for g in s.groups.values()] == [7, 6, 8, 8, 6]
    for cfg in (e.config for e in s.experiments):
        assert cfg.model == "resnet_shallow" and cfg.optimizer == "adamw"
        assert (cfg.epochs, cfg.patience, cfg.mixed_precision) == (50, 15, True)
    assert s.dataset["data_percentage"] == 50 and s.dataset["image_size"] == 256
    assert [c.batch_size for c in configs("bottleneck", "batch_size")] == [
        16,
        32,
        64,
        96,
        128,
        192,
        256,
    ]
    assert all(c.lr == 3e-4 for c in configs("bottleneck", "batch_size"))
    assert [(c.batch_size, c.lr) for c in configs("bottleneck", "lr_scaling")] == [
        (32, 3e-4),
        (64, 6e-4),
        (128, 1.2e-3),
        (32, 1e-4),
        (32, 1e-3),
        (128, 3e-4),
    ]
    accumulation = [
        (c.batch_size, c.grad_accum_steps) for c in configs("bottleneck", "grad_accumulation")
    ]
    assert accumulation == [(32, 1), (16, 2), (8, 4), (64, 1), (32, 2), (16, 4), (128, 1), (32, 4)]
    assert [c.effective_batch_size for c in configs("bottleneck", "grad_accumulation")] == [
        32,
        32,
        32,
        64,
        64,
        64,
        128,
        128,
    ]
    loading = configs("bottleneck", "data_loading")
    assert [(c.num_workers, c.cleanup_every) for c in loading] == [
        (0, 3),
        (2, 3),
        (6, 3),
        (6, 5),
        (6, 10),
        (12, 5),
        (18, 5),
        (18, 10),
    ]
    assert {c.data_path for c in loading} == {"dataloader"}  # workers only exist there
    schedules = [(c.batch_size, c.scheduler) for c in configs("bottleneck", "scheduler")]
    assert schedules == [
        (32, "cosine"),
        (32, "step"),
        (32, "exponential"),
        (32, "plateau"),
        (128, "cosine"),
        (128, "step"),
    ]
    by_kind = {c.scheduler: c for c in configs("bottleneck", "scheduler")}
    assert (by_kind["step"].step_size, by_kind["step"].gamma) == (15, 0.5)
    assert by_kind["exponential"].gamma == 0.95
    assert (by_kind["plateau"].plateau_factor, by_kind["plateau"].plateau_patience) == (0.5, 10)


def test_bottleneck_quick_is_a_shorter_10_experiment_subset():
    quick, full = study("bottleneck_quick"), study("bottleneck")
    assert len(quick.experiments) == 10
    assert quick.dataset == full.dataset
    assert all(e.config.epochs < 50 for e in quick.experiments)
    full_settings = {
        (c.batch_size, c.lr, c.grad_accum_steps) for c in (e.config for e in full.experiments)
    }
    assert {
        (c.batch_size, c.lr, c.grad_accum_steps) for c in (e.config for e in quick.experiments)
    } <= full_settings


def test_cifar100_grid_is_the_full_2x2x2x2x2_product():
    s = study("cifar100_grid")
    cells = {
        (c.model, c.mix != "none", c.optimizer, c.lr, c.scheduler)
        for c in (e.config for e in s.experiments)
    }
    assert len(s.experiments) == 32
    assert cells == set(
        itertools.product(
            ["resnet18_imagenet", "preact_resnet18"],
            [False, True],
            ["sgd", "adam"],
            [1e-4, 1e-2],
            ["plateau", "cosine"],
        )
    )
    for c in (e.config for e in s.experiments):
        assert (c.epochs, c.patience, c.min_delta, c.batch_size) == (50, 3, 0.01, 256)
        assert (c.weight_decay, c.momentum, c.nesterov) == (1e-3, 0.9, True)
        assert (c.plateau_patience, c.plateau_factor, c.t_max) == (5, 0.1, 50)
        assert set(c.augment) == {"crop", "hflip", "rotate", "jitter"}
        assert c.rotation_degrees == 15 and c.data_path == "device"
        assert c.mix in ("none", "cutmix_mixup")
    assert s.dataset["name"] == "cifar100"


def test_cifar100_followups():
    s = study("cifar100_followup")
    extended = configs("cifar100_followup", "extended")
    best_sgd = {(c.model, c.mix, c.optimizer, c.lr, c.scheduler, c.nesterov) for c in extended}
    assert best_sgd == {("preact_resnet18", "cutmix_mixup", "sgd", 1e-2, "cosine", True)}
    assert [(c.epochs, c.t_max) for c in extended] == [(50, 50), (100, 100)]
    assert extended[1].patience > extended[0].patience
    upsampled = [
        c
        for c in configs("cifar100_followup", "upsampling")
        if c.model == "resnet18_imagenet" and c.upsample_size == 224
    ]
    assert len(upsampled) == 1
    assert (upsampled[0].optimizer, upsampled[0].lr, upsampled[0].weight_decay) == (
        "adam",
        1e-3,
        1e-4,
    )
    assert s.dataset["name"] == "cifar100"


def test_cifar10_resnet18_two_settings():
    cfgs = configs("cifar10_resnet18", "batch_lr")
    assert [(c.batch_size, c.lr) for c in cfgs] == [(64, 0.15), (128, 0.2)]
    for c in cfgs:
        assert (c.model, c.optimizer, c.momentum, c.weight_decay) == ("resnet18", "sgd", 0.9, 5e-4)
        assert (c.scheduler, c.epochs) == ("cosine", 25)
        assert set(c.augment) == {"crop", "hflip", "jitter"}
        assert (c.crop_padding, c.color_jitter) == (4, 0.2)


@pytest.mark.parametrize("name", ["vgg_cells", "vgg_cells_ci"])
def test_vgg_cells_follows_the_counting_protocol(name):
    s = study(name)
    assert s.metric == "mae" and s.dataset["name"] == "vgg_cells"
    assert s.dataset["split"] == {"method": "ordered", "train": 100, "val": 0, "test": 100}
    assert [e.config.train_subset for e in s.experiments] == [32, 64]
    assert all(e.config.mix == "none" for e in s.experiments)
    if name == "vgg_cells":
        assert len(s.seeds) == 5  # the protocol's 5 random draws
        cited = " ".join(r["source"] for r in s.references)
        for author in ("Lempitsky", "Fiaschi", "Arteta", "Xie", "Cohen"):
            assert author in cited


# -- dry runs: the real workflow plans exactly the study's runs ------------------------------


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    """One `snakemake -n` of every shipped study at once (`--config study=a,b,...`), with
    fake CIFAR and VGG cells folders where a study needs real data: one process instead of
    one per study (each pays Snakemake's start-up)."""
    root = tmp_path_factory.mktemp("shipped")
    data = root / "data"
    write_cifar10(data)
    write_cifar100(data)
    workdir = write_workdir(
        root / "w",
        "",
        study=",".join(SHIPPED),
        studies_dir=str(STUDIES),
        data_root=str(data),
        vgg_cells_dir=str(write_vgg_cells(root / "cells", [3, 4])),
    )
    proc = run_snakemake(workdir, "-n", "--cores", "1", timeout=300)
    return proc.stdout + proc.stderr


def _planned_configs(output: str, name: str) -> list[str]:
    """The configurations the train jobs of study `name` write (one output folder each)."""
    return re.findall(rf"output: \S*/{name}/runs/([0-9a-f]{{10}})\s*$", output, re.M)


@pytest.mark.parametrize("name", SHIPPED)
def test_dry_run_plans_one_train_job_per_distinct_configuration(dry_run, name):
    s = study(name)
    planned = _planned_configs(dry_run, name)
    assert len(planned) == len(set(planned)) == len(s.configs())
    assert set(planned) == set(s.configs())


def test_the_dry_run_counts_every_studys_train_jobs(dry_run):
    trains = re.search(r"^train\s+(\d+)\s*$", dry_run, re.M)
    assert trains and int(trains.group(1)) == sum(len(study(n).configs()) for n in SHIPPED)


def test_missing_or_empty_data_root_is_a_clear_error_before_any_job(tmp_path):
    workdir = write_workdir(tmp_path / "w", "", study="cifar10_resnet18", studies_dir=str(STUDIES))
    proc = run_snakemake(workdir, "-n", "--cores", "1", check=False, timeout=300)
    assert proc.returncode != 0
    assert "dataset cifar10 needs --config data_root=PATH" in proc.stdout + proc.stderr
    (tmp_path / "empty").mkdir()
    workdir = write_workdir(
        tmp_path / "w",
        "",
        study="cifar10_resnet18",
        studies_dir=str(STUDIES),
        data_root=str(tmp_path / "empty"),
    )
    proc = run_snakemake(workdir, "-n", "--cores", "1", check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cifar-10-batches-py/data_batch_1" in output and str(tmp_path / "empty") in output


VGG_DIR = REPO.parent / "shared" / "datasets" / "vgg_cells"


@pytest.mark.slow
@pytest.mark.skipif(not VGG_DIR.is_dir(), reason="../shared/datasets/vgg_cells not present")
def test_vgg_cells_ci_runs_end_to_end(tmp_path):
    """The reduced counting study through the real workflow: real images, the protocol's
    splits and draws, a report with the published MAEs next to ours."""
    import json

    import pandas as pd

    from hpstudy.prepare import load_prepared

    s = study("vgg_cells_ci")
    workdir = write_workdir(
        tmp_path, "", study="vgg_cells_ci", studies_dir=str(STUDIES), vgg_cells_dir=str(VGG_DIR)
    )
    run_snakemake(workdir, "--cores", "2")
    results = tmp_path / "results" / "vgg_cells_ci"
    summary = pd.read_csv(results / "summary.csv")
    assert sorted(zip(summary["experiment"], summary["seed"], strict=True)) == sorted(s.runs())
    assert (summary["status"] == "ok").all()
    assert sorted(summary["n_train"].unique()) == [32, 64]
    prepared_dir = next((tmp_path / "results" / "prepared").glob("vgg_cells-*"))
    manifest = json.loads((prepared_dir / "manifest.json").read_text())
    assert manifest["split_sizes"] == {"train": 100, "val": 0, "test": 100}
    assert manifest["names"][-100:] == [f"{i:03d}" for i in range(101, 201)]  # last 100
    assert manifest["target_name"] == "count"
    # the model must count far better than always answering the training pool's mean count
    data = load_prepared(prepared_dir / "prepared.pt")
    counts, split = data["targets"].numpy(), data["split"]
    trivial = abs(counts[split["test"]] - counts[split["train"]].mean()).mean()
    assert (summary["test_mae"] < 0.5 * trivial).all(), (summary["test_mae"].tolist(), trivial)
    group = pd.read_csv(results / "groups" / "protocol.csv")
    assert group["test_mae_sd"].notna().all()  # mean +- SD over the draws
    report = (tmp_path / "reports" / "vgg_cells_ci" / "report.md").read_text()
    assert "test_mae" in report and "Lempitsky" in report and "3.5 +- 0.2" in report
