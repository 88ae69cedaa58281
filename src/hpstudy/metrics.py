"""Evaluation metrics in the dataset's own units (densities, counts, class labels)."""

from __future__ import annotations

import math

import torch


def regression_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    pred, true = pred.double().flatten(), true.double().flatten()
    err = pred - true
    mse = float((err**2).mean())
    ss_tot = float(((true - true.mean()) ** 2).sum())
    r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan
    return {"r2": r2, "mse": mse, "rmse": math.sqrt(mse), "mae": float(err.abs().mean())}


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    logits, labels = logits.float(), labels.long()
    loss = float(torch.nn.functional.cross_entropy(logits, labels))
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1 = float((topk[:, 0] == labels).double().mean())
    top5 = float((topk == labels[:, None]).any(dim=1).double().mean())
    return {"accuracy": top1, "top5": top5, "loss": loss}
