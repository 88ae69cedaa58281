"""Evaluation metrics in the dataset's own units (densities, counts, class labels), and the
one owner of the facts about them: which metrics a task has, which one is primary by default,
and in which direction each is better. Every other module asks here."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where tensors are scored: the bookkeeping jobs (decide_round,
    import torch  # aggregate, report) read these facts and skip its ~5 s import

# Test metrics per task, as training writes them (`test_` + the name); the first is the
# default primary metric. A study's `metric:` (study.schema.yaml, checked against
# METRIC_NAMES by tests) picks another one of its task's.
TASK_METRICS = {
    "regression": ("r2", "mse", "rmse", "mae"),
    "classification": ("accuracy", "top5", "loss"),
}
METRIC_NAMES = tuple(m for names in TASK_METRICS.values() for m in names)
LOWER_IS_BETTER = frozenset({"test_mse", "test_rmse", "test_mae", "test_loss"})


def metric_columns(task: str) -> list[str]:
    """The summary.csv columns of the test metrics of a task, primary default first."""
    return [f"test_{m}" for m in TASK_METRICS[task]]


def primary_metric(task: str, chosen: str | None = None) -> str:
    """The study's primary metric column: `chosen` (a name of the task's metrics, with or
    without `test_`), else the task's default (test_r2 or test_accuracy)."""
    if not chosen:
        return metric_columns(task)[0]
    column = chosen if chosen.startswith("test_") else f"test_{chosen}"
    if column not in metric_columns(task):
        raise ValueError(
            f"metric {chosen!r} is not a {task} metric; choose one of {list(TASK_METRICS[task])}"
        )
    return column


def metric_units(metric: str, target_units: str) -> str:
    """The units of a test metric, given the units of the dataset's target."""
    name = metric.removeprefix("test_")
    if name == "r2":
        return "unitless (1 is perfect, 0 predicts no better than the mean)"
    if name == "mse":
        return f"({target_units})²" if target_units else "target units²"
    if name in ("rmse", "mae"):
        return target_units or "target units"
    if name in ("accuracy", "top5"):
        return "fraction of test images classified correctly (0 to 1; ×100 for %)"
    if name == "loss":
        return "nats (mean cross-entropy per test image)"
    raise ValueError(f"no units known for metric {metric!r}")


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def regression_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    pred, true = pred.double().flatten(), true.double().flatten()
    err = pred - true
    mse = float((err**2).mean())
    ss_tot = float(((true - true.mean()) ** 2).sum())
    r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan
    return {"r2": r2, "mse": mse, "rmse": math.sqrt(mse), "mae": float(err.abs().mean())}


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    import torch

    logits, labels = logits.float(), labels.long()
    loss = float(torch.nn.functional.cross_entropy(logits, labels))
    k = min(5, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1 = float((topk[:, 0] == labels).double().mean())
    top5 = float((topk == labels[:, None]).any(dim=1).double().mean())
    return {"accuracy": top1, "top5": top5, "loss": loss}
