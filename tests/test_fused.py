"""Fused seeds (hpstudy.fused) reproduce separate runs of the same seeds.

Each scenario trains the same seeds twice through hpstudy.seeds.run_seeds, the train job's
entry point: one after the other (fuse=False) and as one stacked model (fuse=True), and
compares every seed's published files: every history row (losses, validation metrics,
learning rate, gradient diagnostics), layers.csv, and metrics.json.

Tolerance. The runs are in float64 (torch's default dtype set for this module; Task follows
it). A fused step computes the same sums as a separate one in another order (a grouped
convolution, a vmapped BatchNorm), so the two differ by floating-point reassociation only:
about 1e-16 per operation, grown to about 1e-14 relative after the few dozen steps here
(measured). `RTOL = 1e-9` leaves four orders of magnitude for other BLAS builds while a
real difference is caught: `test_the_tolerance_catches_a_tiny_real_difference` changes one
seed's learning rate by one part in a million and sees it exceed the tolerance. In float32,
as runs train, reassociation alone moves weights by about 1e-3 after a few steps, which
would hide such bugs: hence float64.

Timing columns (epoch_time_s, data_time_s, samples_per_s) are not compared: a fused seed
records its share of the group's time.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hpstudy import models
from hpstudy.config import TrainConfig
from hpstudy.failures import Interrupted
from hpstudy.fused import FusedTrainer, why_not_fused
from hpstudy.prepare import load_prepared
from hpstudy.seeds import run_seeds
from hpstudy.train import Trainer

RTOL, ATOL = 1e-9, 1e-12
TIMING = ("epoch_time_s", "data_time_s", "samples_per_s")
METRICS = (
    "status",
    "diverged_epoch",
    "best_epoch",
    "best_val_loss",
    "epochs_run",
    "stopped_early",
    "optimizer_steps",
    "test_loss",
    "test_r2",
    "test_mae",
    "test_accuracy",
    "n_train",
)
BASE = {"model": "resnet_shallow", "batch_size": 8, "lr": 1e-3, "diagnostics_every": 3}

# name -> (config over BASE, seeds); each a small real training run on 32 px images
SCENARIOS = {
    # the whole training split (one shared copy, each seed its own order) and augmentation
    "plain": ({"epochs": 2, "patience": None, "augment": ["hflip", "crop"]}, [0, 1]),
    # 20 of the 56 images per seed (each seed its own draw): 5 batches = groups of 3 and 2;
    # clipping at 0.5 is active on every step (gradient norms are larger), per seed
    "accumulation": (
        {
            "epochs": 1,
            "patience": None,
            "batch_size": 4,
            "grad_accum_steps": 3,
            "train_subset": 20,
            "grad_clip": 0.5,
        },
        [0, 1],
    ),
    # seed 0's validation loss stalls and its learning rate halves at epoch 4; seed 1's not
    "plateau": (
        {
            "epochs": 4,
            "patience": None,
            "batch_size": 4,
            "train_subset": 16,
            "lr": 3e-3,
            "scheduler": "plateau",
            "plateau_patience": 1,
        },
        [0, 1],
    ),
    # seeds 0 and 2 run out of patience after epoch 2, seed 1 trains on to epoch 4
    "early_stopping": (
        {"epochs": 4, "patience": 1, "batch_size": 4, "train_subset": 16, "lr": 3e-3},
        [0, 1, 2],
    ),
    # seed 1's loss stops being finite in epoch 2, seed 0's in epoch 3
    "divergence": (
        {
            "epochs": 3,
            "patience": None,
            "batch_size": 4,
            "train_subset": 16,
            "optimizer": "sgd",
            "lr": 0.2,
        },
        [0, 1],
    ),
}


@pytest.fixture(scope="module", autouse=True)
def float64():
    """float64 and one thread (as the train jobs run) for this module's runs."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def train(prepared, out: Path, overrides: dict, seeds: list[int], fuse: bool, **kw) -> dict:
    cfg = TrainConfig.from_dict({**BASE, **overrides, "seed": seeds[0]})
    logs: list[str] = []
    results = run_seeds(
        cfg, seeds, prepared, out / "runs", out / "keep", logs.append, fuse=fuse, **kw
    )
    return {"results": results, "runs": out / "runs", "log": "\n".join(logs), "out": out}


@pytest.fixture(scope="module")
def scenario(prepared, tmp_path_factory):
    """Each scenario trained separately and fused, once per module."""
    done: dict[str, tuple[dict, dict]] = {}

    def get(name: str) -> tuple[dict, dict]:
        if name not in done:
            overrides, seeds = SCENARIOS[name]
            out = tmp_path_factory.mktemp(name)
            done[name] = tuple(
                train(prepared, out / kind, overrides, seeds, fuse, tensorboard=out / kind / "tb")
                for kind, fuse in (("separate", False), ("fused", True))
            )
        return done[name]

    return get


def read_layers(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt") as fh:
        return pd.read_csv(fh)


def assert_same_runs(separate: dict, fused: dict, seeds: list[int]) -> None:
    """Every seed's history rows, layers and metrics agree within the tolerance."""
    for seed in seeds:
        a_dir, b_dir = separate["runs"] / f"seed{seed}", fused["runs"] / f"seed{seed}"
        a = pd.read_csv(a_dir / "history.csv").drop(columns=list(TIMING))
        b = pd.read_csv(b_dir / "history.csv").drop(columns=list(TIMING))
        assert list(a.columns) == list(b.columns) and len(a) == len(b), f"seed {seed}"
        np.testing.assert_allclose(
            b.to_numpy(float), a.to_numpy(float), rtol=RTOL, atol=ATOL, err_msg=f"seed {seed}"
        )
        la, lb = read_layers(a_dir / "layers.csv.gz"), read_layers(b_dir / "layers.csv.gz")
        assert la[["step", "epoch", "layer"]].equals(lb[["step", "epoch", "layer"]])
        cols = ["grad_abs_mean", "update_ratio"]
        np.testing.assert_allclose(
            lb[cols].to_numpy(float), la[cols].to_numpy(float), rtol=RTOL, atol=ATOL
        )
        ma = json.loads((a_dir / "metrics.json").read_text())
        mb = json.loads((b_dir / "metrics.json").read_text())
        for key in METRICS:
            if isinstance(ma.get(key), float):
                assert mb[key] == pytest.approx(ma[key], rel=RTOL, abs=ATOL), (seed, key)
            else:
                assert mb.get(key) == ma.get(key), (seed, key)
        assert mb["config_hash"] == ma["config_hash"]  # the same runs
        assert mb["fused_seeds"] == len(seeds) and "fused_seeds" not in ma
        assert (b_dir / "config.yaml").read_text() == (a_dir / "config.yaml").read_text()


def test_initial_weights_and_data_order_are_the_separate_runs(prepared, tmp_path):
    data = load_prepared(prepared)
    seeds, cfgs = [0, 1, 2], []
    for seed in seeds:
        cfgs.append(TrainConfig.from_dict({**BASE, "augment": ["hflip"], "seed": seed}))
    fused = FusedTrainer(
        cfgs,
        None,
        [tmp_path / f"f{s}" for s in seeds],
        [tmp_path / f"f{s}.pt" for s in seeds],
        lambda m: None,
        data,
    )
    for cfg, t in zip(cfgs, fused.trainers, strict=True):
        alone = Trainer(cfg, None, tmp_path / "a", tmp_path / "a.pt", lambda m: None, data)
        for (name, w), (_, v) in zip(
            alone.model.state_dict().items(), t.model.state_dict().items(), strict=True
        ):
            assert torch.equal(w, v), (cfg.seed, name)
        for epoch in (0, 1):
            for (xa, ya), (xb, yb) in zip(
                alone.train_loader.epoch(epoch), t.train_loader.epoch(epoch), strict=True
            ):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = fused.trainers[0]
    assert all(t.train_loader.images is first.train_loader.images for t in fused.trainers)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fused_seeds_reproduce_separate_runs(scenario, name):
    separate, fused = scenario(name)
    seeds = SCENARIOS[name][1]
    assert (
        "as one stacked model" in fused["log"] and "train one after the other" not in (fused["log"])
    )
    assert_same_runs(separate, fused, seeds)
    metrics = {s: fused["results"][s] for s in seeds}
    history = {s: pd.read_csv(fused["runs"] / f"seed{s}" / "history.csv") for s in seeds}
    # each scenario shows what it is there for
    if name == "accumulation":
        assert all(m["optimizer_steps"] == 2 for m in metrics.values())
        assert all((h["grad_norm_mean"] <= 0.5 + 1e-9).all() for h in history.values())
    if name == "plateau":
        assert list(history[0]["lr"]) == [3e-3, 3e-3, 3e-3, 1.5e-3]
        assert list(history[1]["lr"]) == [3e-3] * 4
    if name == "early_stopping":
        assert [metrics[s]["epochs_run"] for s in seeds] == [2, 4, 2]
        assert all(metrics[s]["stopped_early"] for s in seeds)
    if name == "divergence":
        assert [metrics[s]["diverged_epoch"] for s in seeds] == [3, 2]
    if name == "plain":  # each seed's own TensorBoard events, as a separate run writes them
        pytest.importorskip("tensorboard")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for seed in seeds:
            values = []
            for run in (separate, fused):
                acc = EventAccumulator(str(run["out"] / "tb" / f"seed{seed}"))
                acc.Reload()
                events = acc.Scalars("loss/val")
                values.append(([e.step for e in events], [e.value for e in events]))
            assert values[1][0] == values[0][0] == [1, 2]
            assert values[1][1] == pytest.approx(values[0][1], rel=1e-6)  # float32 events


def test_the_tolerance_catches_a_tiny_real_difference(prepared, scenario, tmp_path):
    """One seed trained with its learning rate changed by 1e-6 (relative) fails the
    comparison: the tolerance is tight enough to see a real difference."""
    overrides, _ = SCENARIOS["accumulation"]
    _, fused = scenario("accumulation")
    nudged = train(prepared, tmp_path, {**overrides, "lr": 1e-3 * (1 + 1e-6)}, [0], fuse=False)
    with pytest.raises(AssertionError):
        assert_same_runs(nudged, fused, [0])


def test_sigterm_mid_epoch_then_resume_equals_the_uninterrupted_fused_run(
    prepared, scenario, tmp_path
):
    """A fused job stopped by SIGTERM inside epoch 2 saves every seed's checkpoint; the
    rerun resumes each and ends with exactly the uninterrupted fused run's results (the
    same operations in the same order), and within the tolerance of separate runs."""
    overrides, seeds = SCENARIOS["plain"]
    separate, fused = scenario("plain")
    cfg = TrainConfig.from_dict({**BASE, **overrides, "seed": seeds[0]})
    started = threading.Event()

    class Watch:  # sees the fused Trainers through the loop's callback hook
        trainers: list = []

        def on_train_start(self, trainer):
            self.trainers.append(trainer)
            started.set()

    def stop_in_epoch_two():  # 7 steps per epoch: step 10 is inside epoch 2
        started.wait()
        while not Watch.trainers or Watch.trainers[0].state.step < 10:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    from hpstudy import train as train_module

    train_module.CALLBACKS.append(Watch())
    try:
        threading.Thread(target=stop_in_epoch_two, daemon=True).start()
        with pytest.raises(Interrupted):
            run_seeds(cfg, seeds, prepared, tmp_path / "runs", tmp_path / "keep", fuse=True)
    finally:
        train_module.CALLBACKS.pop()
    assert all((tmp_path / "keep" / f"seed{s}.pt").is_file() for s in seeds)
    resumed = train(prepared, tmp_path, overrides, seeds, fuse=True)
    for seed in seeds:
        ((epoch, batch),) = resumed["results"][seed]["resumed_at"]
        assert epoch == 1 and batch > 0  # inside epoch 2
        a = pd.read_csv(fused["runs"] / f"seed{seed}" / "history.csv").drop(columns=list(TIMING))
        b = pd.read_csv(resumed["runs"] / f"seed{seed}" / "history.csv").drop(columns=list(TIMING))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        for key in METRICS:
            assert resumed["results"][seed].get(key) == fused["results"][seed].get(key)
        records = json.loads((tmp_path / "keep" / f"seed{seed}.attempts.json").read_text())
        assert [r["fused_seeds"] for r in records] == [2, 2]
    assert_same_runs(separate, resumed, seeds)


def classification_data(n: int = 48, classes: int = 4, size: int = 32) -> dict:
    """A prepared-dataset dict (hpstudy.prepare.load_prepared's form) of random RGB images
    and labels, in memory: enough for CutMix/MixUp, which need class labels."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    targets = torch.randint(0, classes, (n,), generator=gen)
    split = {"train": np.arange(0, 32), "val": np.arange(32, 40), "test": np.arange(40, n)}
    manifest = {
        "task": "classification",
        "num_classes": classes,
        "image_shape": [3, size, size],
        "mean": [0.5] * 3,
        "std": [0.29] * 3,
        "content_sha256": "random-classes",
    }
    return {"images": images, "targets": targets, "split": split, "manifest": manifest}


def test_cutmix_mixup_draws_follow_each_seeds_own_rng(tmp_path):
    """CutMix/MixUp draw from torch's global RNG; fused, each seed draws from its own state,
    so its metrics equal its separate run's."""
    data, seeds = classification_data(), [0, 1]
    cfgs = [
        TrainConfig.from_dict(
            {"model": "lenet", "batch_size": 8, "epochs": 2, "patience": None, "seed": s}
            | {"mix": "cutmix_mixup", "augment": ["hflip"]}
        )
        for s in seeds
    ]
    alone = {
        c.seed: Trainer(
            c, None, tmp_path / f"a{c.seed}", tmp_path / f"a{c.seed}.pt", lambda m: None, data
        ).fit()
        for c in cfgs
    }
    fused = FusedTrainer(
        cfgs,
        None,
        [tmp_path / f"f{s}" for s in seeds],
        [tmp_path / f"f{s}.pt" for s in seeds],
        lambda m: None,
        data,
    ).fit()
    for seed in seeds:
        for key in ("best_val_loss", "test_loss", "test_accuracy"):
            assert fused[seed][key] == pytest.approx(alone[seed][key], rel=RTOL, abs=ATOL)
        a = pd.read_csv(tmp_path / f"a{seed}" / "history.csv")
        b = pd.read_csv(tmp_path / f"f{seed}" / "history.csv")
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=RTOL)


def test_what_cannot_be_fused_trains_one_after_the_other(prepared, tmp_path, monkeypatch):
    data = load_prepared(prepared)
    manifest, cpu = data["manifest"], torch.device("cpu")
    cks = [tmp_path / "seed0.pt", tmp_path / "seed1.pt"]

    def why(**over):
        cfgs = [TrainConfig.from_dict({**BASE, **over, "seed": s}) for s in (0, 1)]
        return why_not_fused(cfgs, cks, manifest, cpu)

    assert why() is None
    assert "compile" in why(compile=True)
    assert "dataloader" in why(data_path="dataloader")
    # fp16 needs its GradScaler only on CUDA, where autocast acts
    assert why(mixed_precision=True, amp_dtype="fp16") is None
    assert "fp16" in why_not_fused(
        [TrainConfig.from_dict({**BASE, "mixed_precision": True, "amp_dtype": "fp16"})] * 2,
        cks,
        manifest,
        torch.device("cuda"),
    )
    # a model that draws random numbers in its forward: dropout cannot follow each seed
    # (no shipped model has dropout; this one is registered for the test)
    monkeypatch.setitem(
        models.MODEL_FACTORIES,
        "_dropout",
        lambda c, n, size: torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(c * size * size, n)
        ),
    )
    cfgs = [TrainConfig.from_dict({**BASE, "seed": s}) for s in (0, 1)]
    for cfg in cfgs:  # past the config's check of model names
        object.__setattr__(cfg, "model", "_dropout")
    reason = why_not_fused(cfgs, cks, manifest, cpu)
    assert "draws random numbers in its forward (1)" in reason
    # run_seeds says why in the job's log and trains the seeds one after the other
    logs: list[str] = []
    cfg = TrainConfig.from_dict({**BASE, "epochs": 1, "train_subset": 8, "data_path": "dataloader"})
    results = run_seeds(
        cfg, [0, 1], prepared, tmp_path / "runs", tmp_path / "keep", logs.append, fuse=True
    )
    assert "train one after the other: data_path: dataloader" in "\n".join(logs)
    assert all("fused_seeds" not in m for m in results.values())


def test_compute_counts_a_fused_attempt_once(tmp_path):
    """One attempt that trained seeds 0 and 1 as one model is on both records: compute.csv
    counts its wall, CPU and GPU time once, half to each run."""
    from hpstudy import attempts
    from hpstudy.aggregate import compute_table, timeline_table
    from hpstudy.study import load_study

    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(STUDY)
    study = load_study(study_file)
    ((config_id, exps),) = study.configs().items()
    checkpoints = [tmp_path / "checkpoints" / config_id / f"seed{s}.pt" for s in (0, 1)]
    resources = {"threads": 4, "device": "cuda", "gpu": "0", "fused_seeds": 2}
    rows = []
    for seed, ck in enumerate(checkpoints):
        attempts.begin(ck, now=1000.0, resources=resources)
        attempts.end(ck, attempts.FINISHED, now=1600.0)
        records = attempts.summary(ck, now=1600.0)["attempt_records"]
        rows.append(
            {"experiment": exps[0].id, "config_hash": config_id, "seed": seed, "device": "cuda"}
            | {"attempt_records": json.dumps(records)}
        )
    table = timeline_table(study, pd.DataFrame(rows), tmp_path)
    assert list(table["fused_seeds"]) == [2, 2]
    compute = compute_table(study, table).set_index("scope")
    assert compute.loc["study", "runs"] == 2
    assert compute.loc["study", "wall_h"] == pytest.approx(600 / 3600)
    assert compute.loc["study", "gpu_h"] == pytest.approx(600 / 3600)
    assert compute.loc["study", "cpu_h"] == pytest.approx(4 * 600 / 3600)


STUDY = """
name: tiny
seeds: 2
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2}}
base: {epochs: 2, batch_size: 4, patience: null}
groups:
  bs:
    grid: {batch_size: [4]}
"""


@pytest.mark.slow
def test_workflow_with_fuse_seeds_trains_each_configuration_as_one_model(tmp_path):
    """The real workflow with `--config fuse_seeds=true`: the train job fuses its 2 seeds,
    every seed's files are published, and the study is aggregated and reported."""
    from conftest import run_snakemake, write_workdir

    work = write_workdir(
        tmp_path, STUDY, synthetic={"n_images": 40, "image_size": 32, "seed": 0}, fuse_seeds=True
    )
    run_snakemake(work, "--cores", "1")
    (log,) = (work / "results/logs/train/tiny").glob("*.log")
    text = log.read_text()
    assert "fused: 2 seeds (0, 1) as one stacked model" in text
    for seed in (0, 1):
        run = next((work / "results/tiny/runs").glob(f"*/seed{seed}"))
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["fused_seeds"] == 2 and metrics["epochs_run"] == 2
        assert (run / "history.csv").is_file() and (run / "layers.csv.gz").is_file()
    compute = pd.read_csv(work / "results/tiny/compute.csv").set_index("scope")
    assert compute.loc["study", "runs"] == 2
    assert (work / "reports/tiny/report.md").is_file()


@pytest.mark.gpu
def test_fused_on_cuda_matches_separate_runs_then_trains_in_bf16(prepared, tmp_path, monkeypatch):
    """On a GPU: in float64 the fused seeds match separate runs within the tolerance, as on
    the CPU (cuDNN's grouped convolutions, vmapped BatchNorm, per-seed CUDA generators);
    then in float32 with bf16 autocast and channels_last, as the bottleneck study runs,
    fused training runs and starts where the separate runs start."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    monkeypatch.setenv("HPSTUDY_DEVICE", "cuda")
    overrides, seeds = SCENARIOS["plain"]
    separate = train(prepared, tmp_path / "separate", overrides, seeds, fuse=False)
    fused = train(prepared, tmp_path / "fused", overrides, seeds, fuse=True)
    assert "as one stacked model" in fused["log"]
    assert_same_runs(separate, fused, seeds)
    torch.set_default_dtype(torch.float32)
    try:
        bf16 = {**overrides, "mixed_precision": True, "amp_dtype": "bf16"}
        separate = train(prepared, tmp_path / "separate16", bf16, seeds, fuse=False)
        fused = train(prepared, tmp_path / "fused16", bf16, seeds, fuse=True)
    finally:
        torch.set_default_dtype(torch.float64)
    assert "as one stacked model" in fused["log"]
    for seed in seeds:
        a = pd.read_csv(separate["runs"] / f"seed{seed}" / "history.csv")
        b = pd.read_csv(fused["runs"] / f"seed{seed}" / "history.csv")
        assert np.isfinite(b[["train_loss", "val_loss"]].to_numpy()).all()
        # identical initial weights and batches: the first epoch's mean loss agrees to bf16
        # rounding (later epochs drift apart, as any two bf16 runs of one seed may)
        assert b["train_loss"][0] == pytest.approx(a["train_loss"][0], rel=0.05)
        assert fused["results"][seed]["device"].startswith("cuda")


def test_checkpoints_at_different_points_are_not_fused(prepared, tmp_path):
    """A checkpoint left by a separate run (seed 0 after epoch 1, seed 1 none) cannot join a
    fused group that trains in step."""
    data = load_prepared(prepared)
    cfgs = [TrainConfig.from_dict({**BASE, "seed": s}) for s in (0, 1)]
    cks = [tmp_path / "seed0.pt", tmp_path / "seed1.pt"]
    trainer = Trainer(cfgs[0], None, tmp_path / "seed0", cks[0], lambda m: None, data)
    trainer.state.epoch = 1
    trainer.save_checkpoint()
    reason = why_not_fused(cfgs, cks, data["manifest"], torch.device("cpu"))
    assert reason == (
        "their checkpoints stand at different points (epoch, batch: [(0, 0), (1, 0)]), "
        "left by separate runs"
    )
    trainer.state.epoch = 0  # both at the start: fused
    trainer.save_checkpoint()
    assert why_not_fused(cfgs, cks, data["manifest"], torch.device("cpu")) is None


def test_a_failing_fused_group_falls_back_to_separate_runs(prepared, tmp_path, monkeypatch):
    """Whatever breaks fused training (here: an error in its first epoch), the job's log
    says so, the seeds train one after the other, and the failed attempt is on record."""
    from hpstudy import fused as fused_module

    def broken(self, epoch, gens, t0):
        raise RuntimeError("boom")

    monkeypatch.setattr(fused_module.FusedTrainer, "_train_epoch", broken)
    overrides = {"epochs": 1, "patience": None, "train_subset": 8}
    result = train(prepared, tmp_path, overrides, [0, 1], fuse=True)
    assert "fused training of seeds [0, 1] failed (RuntimeError: boom)" in result["log"]
    for seed in (0, 1):
        assert "fused_seeds" not in result["results"][seed]
        assert result["results"][seed]["status"] == "ok"
        records = json.loads((tmp_path / "keep" / f"seed{seed}.attempts.json").read_text())
        assert [r["ended"] for r in records] == ["failed: RuntimeError: boom", "finished"]
        assert records[0]["fused_seeds"] == 2 and "fused_seeds" not in records[1]
