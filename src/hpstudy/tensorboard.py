"""TensorBoard event files of one run: live curves while it trains, hparams when it ends.

`RunWriter(logdir)` writes, once per epoch, the scalars of the run's history row (train and
validation loss, every validation metric, learning rate, gradient-norm statistics, speed)
and, at the end, an hparams summary (the resolved config and the final metrics) that the
HParams dashboard shows as a table and as parallel coordinates over all runs:

    uv run tensorboard --logdir results/{study}/tensorboard

With `logdir=None`, or without the `tensorboard` package, every method is a no-op. Events
are flushed after every epoch, so curves appear while the run trains; a resumed run appends
a new event file to the same folder and TensorBoard joins them by step (= epoch). What the
writer costs: `benchmarks/tensorboard_overhead.py`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# history.csv column -> TensorBoard tag; val_* metrics are added as "val/<metric>"
TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "lr": "optim/lr",
    "grad_norm_mean": "gradients/norm_mean",
    "grad_norm_cv": "gradients/norm_cv",
    "grad_noise_scale": "gradients/noise_scale",
    "grad_variance": "gradients/variance",
    "epoch_time_s": "speed/epoch_time_s",
    "samples_per_s": "speed/samples_per_s",
}
FINAL_METRICS = ("best_val_loss", "best_epoch", "epochs_run", "train_time_s")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def hparam_value(value: Any) -> bool | int | float | str:
    """The HParams plugin takes bool, int, float or str: lists and None become text."""
    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "+".join(map(str, value)) or "none"
    return str(value)


class RunWriter:
    """The training loop's TensorBoard hook: `epoch(row)` per epoch, `finish(cfg, metrics)`."""

    def __init__(self, logdir: str | Path | None):
        self.writer = None
        if logdir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is missing: no events, no error
            return
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(logdir))

    def epoch(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            tag = TAGS.get(key) or (
                f"val/{key[4:]}" if key.startswith("val_") and key != "val_loss" else None
            )
            number = _number(value)
            if tag is not None and number is not None:
                self.writer.add_scalar(tag, number, step)
        self.writer.flush()

    def finish(self, cfg, metrics: dict[str, Any]) -> None:
        """The hparams summary: the resolved config against the final metrics."""
        if self.writer is None:
            return
        hparams = {k: hparam_value(v) for k, v in cfg.to_dict().items()}
        final = {
            f"final/{k}": _number(v)
            for k, v in metrics.items()
            if k.startswith("test_") or k in FINAL_METRICS
        }
        final = {k: v for k, v in final.items() if v is not None}
        final["final/diverged"] = float(metrics.get("status") == "diverged")
        # run_name="." keeps the summary in this run's folder (not a timestamped subfolder)
        self.writer.add_hparams(hparams, final, run_name=".")
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
