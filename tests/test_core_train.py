import json
import math

import pandas as pd
import pytest

from hpstudy.config import TrainConfig
from hpstudy.train import run

FAST = {"epochs": 2, "batch_size": 16, "diagnostics_every": 2}


def train(prepared, tmp_path, name="run", **overrides):
    cfg = TrainConfig.from_dict({**FAST, **overrides})
    return run(cfg, prepared, tmp_path / name, tmp_path / f"{name}.ckpt", log=lambda m: None)


def test_run_writes_history_metrics_and_diagnostics(prepared, tmp_path):
    metrics = train(prepared, tmp_path)
    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 2
    for key in ("test_r2", "test_mse", "test_rmse", "test_mae"):
        assert math.isfinite(metrics[key])
    assert metrics["test_rmse"] == pytest.approx(math.sqrt(metrics["test_mse"]))
    assert metrics["parameters"] == 1_260_129
    assert metrics["flops_train_per_sample"] > metrics["flops_forward_per_sample"] > 0
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {
        "train_loss",
        "val_loss",
        "val_r2",
        "lr",
        "epoch_time_s",
        "grad_norm_cv",
        "grad_noise_scale",
    } <= set(history.columns)
    layers = pd.read_csv(out / "layers.csv.gz")
    assert set(layers["layer"]) >= {"stem.0.weight", "head.4.weight"}
    assert (layers["update_ratio"] > 0).all()
    assert not (tmp_path / "run.ckpt").exists()  # a finished run leaves no checkpoint


def test_same_seed_gives_identical_metrics_on_cpu(prepared, tmp_path):
    a = train(prepared, tmp_path, "a", seed=3)
    b = train(prepared, tmp_path, "b", seed=3)
    c = train(prepared, tmp_path, "c", seed=4)
    for key in ("test_r2", "test_mse", "best_val_loss"):
        assert a[key] == b[key]
    assert a["test_mse"] != c["test_mse"]
    ha = pd.read_csv(tmp_path / "a/history.csv")
    hb = pd.read_csv(tmp_path / "b/history.csv")
    pd.testing.assert_series_equal(ha["train_loss"], hb["train_loss"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"scheduler": "cosine"},
        {"scheduler": "step", "step_size": 1, "gamma": 0.5},
        {"scheduler": "exponential", "gamma": 0.9},
        {"scheduler": "plateau", "plateau_patience": 1},
        {"optimizer": "sgd", "nesterov": True, "lr": 0.01},
        {"optimizer": "rmsprop", "lr": 1e-4},
        {"optimizer": "adam", "grad_clip": 1.0},
        {"data_path": "dataloader", "num_workers": 0},
        {"grad_accum_steps": 3, "batch_size": 8},
        {"cleanup_every": 2, "augment": ["dihedral"]},
        {"train_subset": 20},
    ],
)
def test_knobs_train(prepared, tmp_path, overrides):
    metrics = train(prepared, tmp_path, **overrides)
    assert metrics["status"] == "ok"
    history = pd.read_csv(tmp_path / "run/history.csv")
    if overrides.get("scheduler") == "step":
        assert list(history["lr"]) == pytest.approx([3e-4, 1.5e-4])
    if "train_subset" in overrides:
        assert metrics["n_train"] == 20


def test_grad_accumulation_counts_optimizer_steps(prepared, tmp_path):
    # 56 training samples in micro-batches of 8 -> 7 per epoch -> groups of 3,3,1 -> 3 steps
    metrics = train(prepared, tmp_path, batch_size=8, grad_accum_steps=3)
    assert metrics["optimizer_steps"] == 2 * 3


def test_early_stopping(prepared, tmp_path):
    # min_delta too large to ever count as improvement after the first epoch
    metrics = train(prepared, tmp_path, epochs=6, patience=2, min_delta=1e6)
    assert metrics["stopped_early"] is True
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 1


def test_divergence_is_recorded_not_raised(prepared, tmp_path):
    metrics = train(prepared, tmp_path, lr=10.0, optimizer="sgd", momentum=0.0, epochs=4)
    assert metrics["status"] == "diverged"
    assert 1 <= metrics["diverged_epoch"] <= 4
    assert "test_r2" not in metrics


def test_a_split_per_run_trains_each_seed_on_its_own_split(microbead_dir, tmp_path):
    """The Trainer takes its split from the run's seed when the study asks for it."""
    from hpstudy.prepare import load_prepared, prepare
    from hpstudy.train import Trainer

    spec = {"name": "microbeads", "image_size": 16, "split": {"seed": "per_run"}}
    prepare(spec, microbead_dir, tmp_path / "p.pt")
    data = load_prepared(tmp_path / "p.pt")
    seen = {}
    for seed in (0, 1):
        cfg = TrainConfig.from_dict({**FAST, "seed": seed})
        trainer = Trainer(cfg, None, tmp_path / f"s{seed}", tmp_path / f"s{seed}.ckpt", data=data)
        assert trainer.manifest["split_seed"] == seed
        seen[seed] = trainer.manifest["target_mean"]
    assert seen[0] != seen[1]
