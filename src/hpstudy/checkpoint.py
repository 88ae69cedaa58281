"""Checkpoints of a training run: what is saved, and when a saved one may be resumed.

A checkpoint holds everything a resumed run needs to continue exactly (CPU): model,
optimizer, scheduler and scaler state, the best weights so far, the loop state, the
diagnostics and every RNG state. It is written to a temporary file and renamed into place
(never half-written), and resumed only for the same config hash and the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hpstudy.atomic import atomic_path

if TYPE_CHECKING:
    from hpstudy.train import Trainer

FORMAT = "hpstudy-checkpoint/1"


def payload(trainer: Trainer, gen: torch.Generator | None) -> dict[str, Any]:
    st = trainer.state
    return {
        "format": FORMAT,
        "config_hash": trainer.cfg.hash(),
        "config": trainer.cfg.to_dict(),
        "prepared_sha256": trainer.manifest["content_sha256"],
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler else None,
        "scaler": trainer.scaler.state_dict(),
        "best_weights": trainer.best_weights,
        "state": {k: getattr(st, k) for k in st.__dataclass_fields__},
        "diag": trainer.diag.state_dict(),
        "diag_epoch": trainer.diag.epoch_state(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(trainer.device)
        if trainer.device.type == "cuda"
        else None,
        "rng_aug": gen.get_state() if gen is not None else None,
    }


def save(trainer: Trainer, path: str | Path, gen: torch.Generator | None = None) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload(trainer, gen), tmp)


def resume(trainer: Trainer, path: str | Path) -> torch.ByteTensor | None:
    """Restore `trainer` from `path` if it belongs to this config and data; returns the
    augmentation RNG state of a run interrupted mid-epoch (None otherwise)."""
    from hpstudy.train import RunState

    path = Path(path)
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location=trainer.device, weights_only=True)
    except Exception as err:
        trainer.log(f"checkpoint {path} is unreadable ({err}); starting afresh")
        return None
    if ck.get("format") != FORMAT or ck.get("config_hash") != trainer.cfg.hash():
        trainer.log(
            f"checkpoint {path} belongs to another config "
            f"({ck.get('config_hash')} != {trainer.cfg.hash()}); not resuming"
        )
        return None
    if ck["prepared_sha256"] != trainer.manifest["content_sha256"]:
        trainer.log(f"checkpoint {path} was trained on other data; not resuming")
        return None
    trainer.model.load_state_dict(ck["model"])
    trainer.optimizer.load_state_dict(ck["optimizer"])
    if trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(ck["scheduler"])
    trainer.scaler.load_state_dict(ck["scaler"])
    trainer.best_weights = ck["best_weights"]
    trainer.state = RunState(**ck["state"])
    trainer.diag.load_state_dict(ck["diag"])
    trainer.diag.load_epoch_state(ck["diag_epoch"])
    torch.set_rng_state(ck["rng_cpu"].cpu())
    if ck["rng_cuda"] is not None and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(ck["rng_cuda"].cpu(), trainer.device)
    trainer.state.resumed_at.append([trainer.state.epoch, trainer.state.batch])
    trainer.log(
        f"resumed from {path} at epoch {trainer.state.epoch + 1}, batch {trainer.state.batch}"
    )
    return ck["rng_aug"]
