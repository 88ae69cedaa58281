"""The figures of each "Group" section: the metric against the factor a group varies, or the
special view of its factor (true vs accumulated batches, DataLoader workers x cleanup,
schedulers), its learning curves and gradient statistics, and its per-layer gradient flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from hpstudy.figures.layout import save
from hpstudy.figures.style import T_CI, epoch_axis, label, log10, ok_runs, subplots, theme, wrap


def factor_effect(
    runs: pd.DataFrame, factor: str, metric: str, secondary: str | None, path: Path, title: str
) -> Path:
    """The metric against one factor's values (mean and 95% CI over seeds, dots = runs); a
    second panel on a log axis for the secondary metric (MSE or cross-entropy)."""
    return save(factor_effect_figure(runs, factor, metric, secondary, title), path)


def factor_effect_figure(
    runs: pd.DataFrame, factor: str, metric: str, secondary: str | None, title: str
):
    """A line joins the means only where the factor is numeric (batch size, lr): a line
    between categories (optimizers, schedules) would suggest an order that is not there."""
    theme()
    ok = ok_runs(runs).copy()
    numeric = pd.api.types.is_numeric_dtype(ok[factor]) and ok[factor].nunique() > 1
    columns = [c for c in (metric, secondary) if c and c in ok]
    fig, axes = subplots(1, len(columns), figsize=(5.5 * len(columns), 4), squeeze=False)
    if not numeric:
        ok[factor] = ok[factor].astype(str)
    for ax, column in zip(axes.flat, columns, strict=True):
        sns.pointplot(
            data=ok,
            x=factor,
            y=column,
            errorbar=T_CI,
            capsize=0.15,
            native_scale=numeric,
            ax=ax,
            color="C0",
            markers="o",
            linestyle="-" if numeric else "none",
        )
        sns.stripplot(
            data=ok,
            x=factor,
            y=column,
            native_scale=numeric,
            ax=ax,
            color="0.4",
            size=3,
            alpha=0.6,
            jitter=False,
        )
        if numeric and ok[factor].min() > 0 and ok[factor].max() / ok[factor].min() >= 8:
            ax.set_xscale("log", base=2)
            ax.set_xticks(
                sorted(ok[factor].unique()), labels=[f"{v:g}" for v in sorted(ok[factor].unique())]
            )
            ax.minorticks_off()
        if column != metric:
            ax.set_yscale("log")
            ax.set_ylabel(f"{label(column)}, log scale")
        else:
            ax.set_ylabel(label(column))
        ax.set_xlabel(label(factor))
    fig.suptitle(f"{title}: mean and 95% CI over seeds; dots are single runs")
    return fig


def accumulation_bars(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """True batches vs gradient accumulation at the same effective batch size."""
    theme()
    ok = ok_runs(runs).copy()
    ok["effective batch"] = (ok["batch_size"] * ok["grad_accum_steps"]).astype(int)
    ok["how"] = np.where(
        ok["grad_accum_steps"] == 1,
        "true batch",
        "accumulated "
        + ok["batch_size"].astype(int).astype(str)
        + "×"
        + ok["grad_accum_steps"].astype(int).astype(str),
    )
    order = sorted(ok["how"].unique(), key=lambda h: (h != "true batch", h))
    fig, ax = subplots(figsize=(7, 4.2))
    sns.barplot(
        data=ok,
        x="effective batch",
        y=metric,
        hue="how",
        hue_order=order,
        errorbar=T_CI,
        capsize=0.1,
        ax=ax,
        palette="colorblind",
    )
    ax.set_xlabel("effective batch size (samples per optimizer step)")
    ax.set_ylabel(label(metric))
    ax.set_title("True vs accumulated batches (mean and 95% CI over seeds)")
    ax.legend(title="", fontsize="small")
    return save(fig, path)


def workers_cleanup(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """Heat maps over DataLoader workers x cleanup interval: the metric and time per epoch."""
    theme()
    ok = ok_runs(runs)
    columns = [c for c in (metric, "time_per_epoch_s") if c in ok]
    fig, axes = subplots(1, len(columns), figsize=(5.8 * len(columns), 4), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=True):
        table = ok.pivot_table(
            index="num_workers", columns="cleanup_every", values=column, aggfunc="mean"
        )
        counts = ok.pivot_table(
            index="num_workers", columns="cleanup_every", values=column, aggfunc="count"
        )
        sd = ok.pivot_table(
            index="num_workers", columns="cleanup_every", values=column, aggfunc="std"
        )
        annot = (
            table.map(lambda v: f"{v:.3g}")
            + "\n±"
            + sd.map(lambda v: "–" if pd.isna(v) else f"{v:.2g}")
            + " (n="
            + counts.map(lambda v: "0" if pd.isna(v) else f"{int(v)}")
            + ")"
        )
        annot = annot.where(table.notna(), "")  # a list design leaves cells not run
        sns.heatmap(
            table,
            annot=annot.to_numpy(),
            fmt="",
            cmap="viridis",
            ax=ax,
            cbar_kws={"label": label(column)},
            annot_kws={"fontsize": 8},
        )
        ax.set_xlabel("cleanup every N batches (0 = never)")
        ax.set_ylabel("DataLoader workers")
        ax.set_title(f"{label(column)}: mean ± SD over seeds")
    return save(fig, path)


def scheduler_comparison(
    runs: pd.DataFrame, history: pd.DataFrame, metric: str, path: Path
) -> Path:
    """The metric per scheduler (mean and 95% CI) and each scheduler's LR per epoch."""
    return save(scheduler_comparison_figure(runs, history, metric), path)


def scheduler_comparison_figure(runs: pd.DataFrame, history: pd.DataFrame, metric: str):
    theme()
    ok = ok_runs(runs)
    fig, axes = subplots(1, 2, figsize=(12, 4.2))
    order = list(dict.fromkeys(ok["label"]))
    sns.barplot(
        data=ok,
        x="label",
        y=metric,
        order=order,
        errorbar=T_CI,
        capsize=0.1,
        ax=axes[0],
        color="C0",
    )
    sns.stripplot(
        data=ok, x="label", y=metric, order=order, ax=axes[0], color="0.3", size=3, jitter=False
    )
    axes[0].set_xlabel("")
    axes[0].set_ylabel(label(metric))
    axes[0].set_title("Metric per scheduler (mean and 95% CI)")
    axes[0].tick_params(axis="x", rotation=30)
    if not history.empty and "lr" in history:
        sns.lineplot(
            data=history,
            x="epoch",
            y="lr",
            hue="label",
            hue_order=order,
            errorbar=None,
            marker="o",
            ax=axes[1],
        )
        axes[1].set_yscale("log")
    epoch_axis(axes[1], history["epoch"] if "epoch" in history else [])
    axes[1].set_ylabel("learning rate (log scale)")
    axes[1].set_title("Learning rate per epoch")
    return fig


CURVES_TITLE = "per-epoch curves (mean and 95% band over seeds)"
GRADIENTS_TITLE = "gradient statistics per epoch (mean and 95% band over seeds)"


def learning_curves(
    history: pd.DataFrame, group: str, columns: list[str], path: Path, title: str = CURVES_TITLE
) -> Path:
    """Per-epoch curves of one group: mean and 95% band over seeds, one line per level."""
    return save(learning_curves_figure(history, group, columns, title), path)


def learning_curves_figure(
    history: pd.DataFrame, group: str, columns: list[str], title: str = CURVES_TITLE
):
    theme()
    frame = history[history["group"] == group]
    columns = [c for c in columns if c in frame and frame[c].notna().any()]
    cols = min(len(columns), 3)
    rows = (len(columns) + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(5.3 * cols, 3.8 * rows), squeeze=False)
    order = list(dict.fromkeys(frame["label"]))
    one_epoch = frame["epoch"].nunique() == 1  # no curve to draw: points with error bars
    for ax, column in zip(axes.flat, columns, strict=False):
        sns.lineplot(
            data=frame,
            x="epoch",
            y=column,
            hue="label",
            hue_order=order,
            errorbar=T_CI,
            err_style="bars" if one_epoch else "band",
            marker="o" if one_epoch else None,
            ax=ax,
            legend=ax is axes.flat[0],
        )
        epoch_axis(ax, frame["epoch"])
        name = label(column)
        positive = frame[column].dropna()
        if (column.endswith("loss") or column == "grad_noise_scale") and (positive > 0).all():
            ax.set_yscale("log")
            name = f"{name}, log scale"
        ax.set_ylabel(wrap(name, 30))
    if axes.flat[0].get_legend() is not None:
        axes.flat[0].get_legend().set_title("")
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    fig.suptitle(f"{group}: {title}")
    return fig


def gradient_flow_group(layers: pd.DataFrame, group: str, path: Path) -> Path:
    """One group: mean |grad| and ||dW||/||W|| per layer (rows) and level (columns), averaged
    over recorded steps and seeds."""
    theme()
    frame = layers[layers["group"] == group]
    order = list(dict.fromkeys(frame["layer"]))
    levels = list(dict.fromkeys(frame["label"]))
    fig, axes = subplots(
        1, 2, figsize=(max(10, 2.2 * len(levels) + 6), max(3.5, 0.28 * len(order)))
    )
    for ax, column, name in (
        (axes[0], "grad_abs_mean", "log10 mean |grad|"),
        (axes[1], "update_ratio", "log10 ||ΔW|| / ||W||"),
    ):
        table = frame.pivot_table(
            index="layer", columns="label", values=column, aggfunc="mean"
        ).reindex(index=order, columns=levels)
        sns.heatmap(
            log10(table),
            cmap="magma",
            annot=True,
            fmt=".1f",
            ax=ax,
            cbar_kws={"label": name, "pad": 0.02},
            annot_kws={"fontsize": 7},
        )
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_title(name)
    fig.suptitle(
        f"{group}: gradient flow and weight updates per layer (mean over recorded steps and seeds)"
    )
    return save(fig, path)
