"""Seaborn figures for the report: PNG files, readable at a glance, with axis units."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from hpstudy.atomic import atomic_path  # noqa: E402

METRIC_LABELS = {
    "test_r2": "test R² (1 is perfect)", "test_mse": "test MSE (units²)",
    "test_rmse": "test RMSE (units)", "test_mae": "test MAE (units)",
    "test_accuracy": "test accuracy (fraction)", "test_top5": "test top-5 accuracy (fraction)",
    "test_loss": "test cross-entropy (nats)",
}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def overview(summary: pd.DataFrame, groups: dict[str, list[str]], metric: str,
             path: Path) -> Path:
    """One panel per group: the metric per experiment, mean and 95% CI over seeds."""
    sns.set_theme(style="whitegrid", context="notebook")
    ok = summary[summary["status"] == "ok"]
    n = len(groups)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (group, experiments) in zip(axes.flat, groups.items(), strict=False):
        frame = ok[ok["group"] == group]
        order = [e.split("-", 1)[1] for e in experiments]
        if frame.empty:
            ax.set_title(f"{group} (no finished runs)")
            continue
        sns.pointplot(data=frame, x="label", y=metric, order=order, errorbar=("ci", 95),
                      linestyle="none", capsize=0.2, ax=ax, color="C0")
        sns.stripplot(data=frame, x="label", y=metric, order=order, ax=ax, color="0.4",
                      size=3, alpha=0.6)
        ax.set_title(group)
        ax.set_xlabel("")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.tick_params(axis="x", rotation=35)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{METRIC_LABELS.get(metric, metric)}: mean and 95% CI over seeds; dots are "
                 "single runs", y=1.0)
    fig.tight_layout()
    return _save(fig, path)


def learning_curves(history: pd.DataFrame, group: str, val_metric: str, path: Path) -> Path:
    """Train/val loss and the validation metric per epoch: mean and 95% band over seeds."""
    sns.set_theme(style="whitegrid", context="notebook")
    frame = history[history["group"] == group]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for ax, column, label in ((axes[0], "train_loss", "train loss (standardised units)"),
                              (axes[1], "val_loss", "validation loss (standardised units)"),
                              (axes[2], val_metric, val_metric.replace("_", " "))):
        if column in frame:
            sns.lineplot(data=frame, x="epoch", y=column, hue="label", errorbar=("ci", 95),
                         ax=ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if column.endswith("loss"):
            ax.set_yscale("log")
    fig.suptitle(f"{group}: learning curves (mean and 95% band over seeds)")
    fig.tight_layout()
    return _save(fig, path)
