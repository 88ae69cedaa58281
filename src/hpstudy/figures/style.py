"""The look every report figure shares: axis labels with units, the seaborn theme,
the t-interval error bars of the tables, epoch axes, and the small helpers the figures of
every section use."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from hpstudy.analysis import t_interval

METRIC_LABELS = {
    "test_r2": "test R² (1 is perfect)",
    "test_mse": "test MSE (target units²)",
    "test_rmse": "test RMSE (target units)",
    "test_mae": "test MAE (target units)",
    "test_accuracy": "test accuracy (fraction)",
    "test_top5": "test top-5 accuracy (fraction)",
    "test_loss": "test cross-entropy (nats)",
    "val_r2": "validation R²",
    "val_accuracy": "validation accuracy (fraction)",
    "val_top5": "validation top-5 accuracy (fraction)",
    "train_loss": "train loss (standardised units)",
    "val_loss": "validation loss (standardised units)",
    "grad_norm_mean": "gradient norm, epoch mean",
    "grad_norm_cv": "gradient-norm CV (SD/mean)",
    "grad_noise_scale": "gradient noise scale B_noise (samples)",
    "grad_variance": "gradient variance per step (trace)",
    "lr": "learning rate",
    "batch_size": "batch size (samples)",
    "time_per_epoch_s": "time per epoch (s)",
    "epochs_run": "epochs run",
    "best_epoch": "best epoch (lowest val loss)",
}
CLASSIFICATION_LOSS_NOTE = "cross-entropy (nats)"


def t_ci(values) -> tuple[float, float]:
    """seaborn `errorbar=` callable: the t-based 95% interval of the mean, the same formula
    as the tables (analysis.t_interval), instead of seaborn's random bootstrap; so every
    figure interval equals its table interval and figures render deterministically."""
    _, _, lo, hi = t_interval(values)
    mean = float(np.mean(values)) if len(values) else np.nan
    return (lo, hi) if np.isfinite(lo) else (mean, mean)


T_CI = t_ci


def label(column: str) -> str:
    return METRIC_LABELS.get(column, column.replace("_", " "))


def theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def subplots(*args, **kwargs):
    """plt.subplots with constrained layout: titles, axis labels, colour bars and a
    suptitle get their own space instead of running into each other (tight_layout ignores
    the suptitle and colour-bar labels)."""
    return plt.subplots(*args, layout="constrained", **kwargs)


def wrap(text: str, width: int = 34) -> str:
    """A long axis label on several lines, so it never runs past its axes."""
    return textwrap.fill(text, width)


def integer_ticks(axis) -> None:
    """Whole-number ticks only (epochs, steps): never 1.25 or 1.75."""
    axis.set_major_locator(MaxNLocator(integer=True))


def epoch_axis(ax, epochs) -> None:
    """An epoch x axis: a tick at every epoch when there are few, else whole-number ticks;
    a single epoch gets a unit-wide axis (a locator would put ticks at 0.99, 1.005, ...)."""
    epochs = sorted({int(e) for e in epochs if pd.notna(e)})
    ax.set_xlabel("epoch")
    if len(epochs) <= 12:
        ax.set_xticks(epochs)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
    else:
        integer_ticks(ax.xaxis)


def ok_runs(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["status"] == "ok"]


def number(value) -> float:
    return float(value) if value is not None else np.nan


def log10(values: pd.Series) -> pd.Series:
    values = values.astype(float)
    return np.log10(values.where(values > 0))
