"""The optimizer and the learning-rate schedule of a run, built from its config by name.

The schedule is stepped once per epoch, after validation (`plateau` with the validation
loss); the learning rate logged for an epoch is the one that epoch trained with.
"""

from __future__ import annotations

import torch

from hpstudy.config import TrainConfig


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.RMSprop(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    """The named schedule (`scheduler:`), or None for a constant learning rate."""
    s = torch.optim.lr_scheduler
    if cfg.scheduler == "cosine":
        return s.CosineAnnealingLR(optimizer, T_max=cfg.t_max or cfg.epochs, eta_min=cfg.eta_min)
    if cfg.scheduler == "step":
        return s.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "exponential":
        return s.ExponentialLR(optimizer, gamma=cfg.gamma)
    if cfg.scheduler == "plateau":
        return s.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=cfg.min_lr,
        )
    return None


def step_scheduler(scheduler, val_loss: float) -> None:
    """The end-of-epoch step: `plateau` watches the validation loss, the others count epochs."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()
