"""What a run says about itself: each epoch, and when it ends.

Per epoch: a row of history.csv (losses, validation metrics, learning rate, speed,
gradient diagnostics), a log line with an ETA, and the progress file that
`hpstudy status` reads. At the end: the test line of the log and metrics.json, the run's
result, written last (its presence marks a finished run). The functions take plain values,
so the plain Trainer and a fused trainer (one call per seed, issue 23) write the same files.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from hpstudy.atomic import write_csv, write_json
from hpstudy.checkpoint import RunState
from hpstudy.formatting import duration

# the short names of the primary validation metric in the epoch log line
LOG_NAMES = {"r2": "val_r2", "accuracy": "val_acc"}


def progress_path(checkpoint: str | Path) -> Path:
    """`checkpoints/{exp}/seed{N}.progress.json`: epoch, ETA, resumes and job of a run in
    progress, rewritten every epoch and removed when it finishes (read by hpstudy.status)."""
    return Path(checkpoint).with_suffix(".progress.json")


def history_row(
    state: RunState,
    epoch: int,
    val: dict[str, float],
    lr: float,
    diagnostics: dict[str, float],
) -> dict[str, Any]:
    """history.csv's row of `epoch` (0-based), from the epoch's running sums in `state`."""
    row = {
        "epoch": epoch + 1,
        "train_loss": state.loss_sum / max(state.seen, 1),
        "val_loss": val["loss"],
        "lr": lr,
        "epoch_time_s": state.epoch_time,
        "data_time_s": state.data_time,
        "samples_per_s": state.seen / state.epoch_time if state.epoch_time > 0 else math.nan,
    }
    row.update({f"val_{k}": v for k, v in val.items() if k != "loss"})
    row.update(diagnostics)
    return row


def write_history(out_dir: str | Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    write_csv(Path(out_dir) / "history.csv", pd.DataFrame(history))


def epoch_line(
    row: dict[str, Any], epochs: int, primary: str, eta_s: float, improved: bool, first: bool
) -> str:
    """The log line of an epoch; the first of an attempt explains its `*`."""
    epoch = row["epoch"]
    metric = f"{LOG_NAMES[primary]} {row[f'val_{primary}']:.4f}"
    return (
        f"epoch {epoch}/{epochs} train_loss {row['train_loss']:.4f} "
        f"val_loss {row['val_loss']:.4f} {metric} lr {row['lr']:.2e} "
        f"{row['epoch_time_s']:.1f}s {row['samples_per_s']:.0f} samples/s "
        f"ETA {duration(eta_s)}"
        + (" *" if improved else "")
        + ("   (* = new best validation loss; its weights are kept for the test)" if first else "")
    )


def write_progress(
    checkpoint: str | Path,
    state: RunState,
    epochs: int,
    primary: str,
    job: dict[str, Any],
    walls: list[float],
) -> None:
    """The progress file of a run: `walls` are the wall times of the epochs run so far in
    this attempt (training + validation), `job` its diagnostics.job_environment()."""
    mean = sum(walls) / len(walls) if walls else None
    last = state.history[-1] if state.history else {}
    write_json(
        progress_path(checkpoint),
        {
            "epoch": state.epoch,
            "epochs": epochs,
            "best_epoch": state.best_epoch,
            "val_loss": last.get("val_loss"),
            "val_metric": last.get(f"val_{primary}"),
            "resumes": len(state.resumed_at),
            "pid": os.getpid(),
            "updated": time.time(),
            "epoch_s": mean,
            "eta_s": mean * (epochs - state.epoch) if mean else None,
            **{k: job.get(k) for k in ("hostname", "job_id", "run_started_at")},
        },
    )


def test_line(test: dict[str, float], primary: str, best_epoch: int) -> str:
    """The log line of the test metrics, the primary one first."""
    weights = (
        f"the best-validation weights of epoch {best_epoch}"
        if best_epoch > 0
        else "the last weights"
    )
    return (
        " ".join(f"test_{k} {test[k]:.4g}" for k in sorted(test, key=primary.__ne__))
        + f" (test set, {weights})"
    )


def run_metrics(
    *,
    cfg,
    state: RunState,
    task: str,
    status: str,
    diverged_epoch: int | None,
    stopped_early: bool,
    test: dict[str, float],
    has_val: bool,
    wall_start: float,
    device,
    model,
    flops: dict[str, float],
    n_train: int,
    prepared_sha256: str,
    checkpoint: str | Path,
) -> dict[str, Any]:
    """metrics.json of a run that ended (ok or diverged): its test metrics, how training
    went, what it cost and where it ran. `cfg`: its TrainConfig; `device`, `model`: torch's;
    `flops`: models.flops_per_sample; `checkpoint`: where its attempts are recorded."""
    import torch

    from hpstudy import attempts
    from hpstudy.device import device_name, peak_memory_kind, peak_memory_mb
    from hpstudy.diagnostics import job_environment
    from hpstudy.metrics import primary_metric
    from hpstudy.models import count_parameters, model_size_mb

    history = state.history
    train_time = sum(r["epoch_time_s"] for r in history)
    samples = sum(r["samples_per_s"] * r["epoch_time_s"] for r in history)
    data_time = sum(r["data_time_s"] for r in history)
    peak_mb = peak_memory_mb(device)
    metrics = {
        "status": status,
        "diverged_epoch": diverged_epoch,
        "task": task,
        **{f"test_{k}": v for k, v in test.items()},
        "best_epoch": state.best_epoch if state.best_epoch > 0 else None,
        # which weights were tested: the best validation epoch's, or (no validation
        # hold-out) the final epoch's
        "tested_weights": "best_val" if has_val else "final",
        "best_val_loss": state.best_val if math.isfinite(state.best_val) else None,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "optimizer_steps": state.step,
        "wall_time_s": time.time() - wall_start,
        "train_time_s": train_time,
        "time_per_epoch_s": train_time / len(history) if history else None,
        "throughput_samples_per_s": samples / train_time if train_time > 0 else None,
        "data_wait_fraction": data_time / train_time if train_time > 0 else None,
        "peak_memory_mb": peak_mb,
        "peak_memory_kind": peak_memory_kind(device),
        "parameters": count_parameters(model),
        "model_size_mb": model_size_mb(model),
        **flops,
        "n_train": n_train,
        "resumed_at": state.resumed_at,
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "config_hash": cfg.hash(),
        "prepared_sha256": prepared_sha256,
        **job_environment(now=wall_start),  # host, batch job id, container image
    }
    metrics.update(attempts.summary(checkpoint))  # wall time over every attempt
    metric_key = primary_metric(task)
    if metric_key in metrics and peak_mb > 0:
        metrics["memory_efficiency"] = metrics[metric_key] / (peak_mb / 1024)
    return metrics
