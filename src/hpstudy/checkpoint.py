"""A run's loop state, and its checkpoints: what is saved, and when a saved one may resume.

A checkpoint holds everything a resumed run needs to continue exactly (CPU): model,
optimizer, scheduler and scaler state, the best weights so far, the loop state (`RunState`),
the diagnostics and every RNG state. It is written to a temporary file and renamed into
place (never half-written), and resumed only for the same config hash and the same data.

This module knows the format, not the trainer: `payload()` takes the state dicts, `load()`
returns a checked checkpoint, and the trainer puts each part back where it belongs. A
fused trainer (issue 23) writes one such checkpoint per seed, from that seed's slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hpstudy.atomic import atomic_path
from hpstudy.logs import console

FORMAT = "hpstudy-checkpoint/1"


@dataclass
class RunState:
    """Everything besides module/optimizer state that a resumed run needs."""

    epoch: int = 0  # epoch to run next (or in progress)
    batch: int = 0  # next batch within `epoch`
    step: int = 0  # optimizer steps taken so far
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    loss_sum: float = 0.0  # running sums of the epoch in progress
    seen: int = 0
    epoch_time: float = 0.0
    data_time: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_at: list[list[int]] = field(default_factory=list)  # [epoch, batch] per resume

    def start_epoch(self) -> None:
        """Zero the running sums at the start of an epoch (not when resuming inside one)."""
        self.loss_sum, self.seen, self.epoch_time, self.data_time = 0.0, 0, 0.0, 0.0

    def observe(self, val_loss: float, epoch: int, min_delta: float) -> bool:
        """Early-stopping bookkeeping after validating `epoch` (1-based): True when the
        validation loss improved on the best by more than `min_delta` (a new best)."""
        if val_loss < self.best_val - min_delta:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def payload(
    cfg,
    prepared_sha256: str,
    *,
    model: dict[str, Any],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any] | None,
    scaler: dict[str, Any],
    best_weights: dict[str, torch.Tensor] | None,
    state: RunState,
    diag: dict[str, Any],
    diag_epoch: dict[str, Any],
    rng_cuda: torch.Tensor | None,
    rng_aug: torch.Tensor | None,
) -> dict[str, Any]:
    """The checkpoint of one run (state dicts, not modules); `cfg` is its TrainConfig.
    torch's CPU RNG state is the process's own, taken here."""
    return {
        "format": FORMAT,
        "config_hash": cfg.hash(),
        "config": cfg.to_dict(),
        "prepared_sha256": prepared_sha256,
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "best_weights": best_weights,
        "state": state.to_dict(),
        "diag": diag,
        "diag_epoch": diag_epoch,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": rng_cuda,
        "rng_aug": rng_aug,
    }


def save(path: str | Path, checkpoint: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load(
    path: str | Path,
    cfg,
    prepared_sha256: str,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """The checkpoint at `path` if it belongs to this config (`cfg.hash()`) and data, else
    None, with the reason logged (unreadable, another config, other data)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        log(f"checkpoint {path} is unreadable ({why}); starting afresh")
        console(
            f"hpstudy: warning: checkpoint {path} is unreadable ({why}); that seed trains "
            "again from scratch"
        )
        return None
    if ck.get("format") != FORMAT or ck.get("config_hash") != cfg.hash():
        log(
            f"checkpoint {path} belongs to another config "
            f"({ck.get('config_hash')} != {cfg.hash()}); not resuming"
        )
        return None
    if ck["prepared_sha256"] != prepared_sha256:
        log(f"checkpoint {path} was trained on other data; not resuming")
        return None
    return ck
