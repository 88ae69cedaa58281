"""TensorBoard events of a real run, read back with tensorboard's own reader; the training
log's ETA, `*` legend and test line."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from hpstudy.config import TrainConfig
from hpstudy.progress import progress_path
from hpstudy.tensorboard import RunWriter
from hpstudy.train import run

FAST = {"epochs": 3, "batch_size": 16, "diagnostics_every": 2, "patience": None}


def load_events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_events_hold_every_epoch_and_the_hparams(prepared, tmp_path):
    pytest.importorskip("tensorboard")
    lines = []
    cfg = TrainConfig.from_dict(FAST)
    metrics = run(
        cfg,
        prepared,
        tmp_path / "run",
        tmp_path / "run.pt",
        log=lines.append,
        tensorboard=tmp_path / "tb",
    )
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    acc = load_events(tmp_path / "tb")
    tags = set(acc.Tags()["scalars"])
    assert {
        "loss/train",
        "loss/val",
        "val/r2",
        "optim/lr",
        "gradients/norm_mean",
        "gradients/norm_cv",
    } <= tags
    for tag, column in (
        ("loss/train", "train_loss"),
        ("loss/val", "val_loss"),
        ("val/r2", "val_r2"),
        ("optim/lr", "lr"),
        ("gradients/norm_mean", "grad_norm_mean"),
    ):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3], tag
        assert [e.value for e in events] == pytest.approx(list(history[column]), rel=1e-6)
    # the hparams summary: session start info naming the config, and the final metrics
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["batch_size"].number_value == 16
    assert start.hparams["optimizer"].string_value == "adamw"
    assert start.hparams["augment"].string_value == "none"
    final = {t: acc.Scalars(t)[-1].value for t in tags if t.startswith("final/")}
    assert final["final/test_r2"] == pytest.approx(metrics["test_r2"], rel=1e-6)
    assert final["final/epochs_run"] == 3 and final["final/diverged"] == 0
    assert not progress_path(tmp_path / "run.pt").exists()  # removed when finished


def test_training_log_has_eta_star_legend_and_test_line(prepared, tmp_path):
    lines = []
    cfg = TrainConfig.from_dict(FAST)
    metrics = run(cfg, prepared, tmp_path / "run", tmp_path / "run.pt", log=lines.append)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3
    assert all(re.search(r" ETA \d+(s|m\d\ds|h\d\dm)\b", line) for line in epochs)
    assert epochs[-1].split(" ETA ")[1].startswith("0s")  # nothing left after the last
    assert "* = new best validation loss" in epochs[0]  # explained once, on the first line
    assert not any("* = new best" in line for line in epochs[1:])
    test = next(line for line in lines if line.startswith("test_r2 "))
    assert f"test_r2 {metrics['test_r2']:.4g} " in test
    assert f"best-validation weights of epoch {metrics['best_epoch']}" in test
    assert not (tmp_path / "tb").exists()


def test_writer_is_a_no_op_when_disabled(tmp_path):
    writer = RunWriter(None)
    writer.epoch({"epoch": 1, "train_loss": 1.0})
    writer.finish(TrainConfig(), {"test_r2": 0.5})
    assert list(tmp_path.iterdir()) == []


def test_writer_skips_missing_and_non_finite_values(tmp_path):
    pytest.importorskip("tensorboard")
    writer = RunWriter(tmp_path)
    writer.epoch(
        {
            "epoch": 1,
            "train_loss": 1.0,
            "val_loss": math.nan,
            "val_r2": None,
            "grad_noise_scale": math.inf,
            "val_accuracy": 0.5,
        }
    )
    writer.close()
    acc = load_events(tmp_path)
    assert set(acc.Tags()["scalars"]) == {"loss/train", "val/accuracy"}
