"""The study-wide figures below the "Training diagnostics" table: learning rate against the
metric by batch size, the distinct LR schedules, early stopping, cost against quality, and
the gradient flow of the recommended configuration's run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from hpstudy.figures.layout import label_points, save
from hpstudy.figures.style import (
    T_CI,
    epoch_axis,
    integer_ticks,
    label,
    log10,
    ok_runs,
    subplots,
    theme,
    wrap,
)


def lr_vs_metric(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """Learning rate against the metric, one line per batch size (mean and 95% CI)."""
    theme()
    ok = ok_runs(runs).copy()
    ok["batch size"] = ok["batch_size"].astype(int).astype(str)
    fig, ax = subplots(figsize=(6.5, 4.2))
    order = sorted(ok["batch size"].unique(), key=int)
    sns.lineplot(
        data=ok,
        x="lr",
        y=metric,
        hue="batch size",
        hue_order=order,
        marker="o",
        errorbar=T_CI,
        err_style="bars",
        ax=ax,
        palette="viridis",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(label(metric))
    ax.set_title("Learning rate vs metric by batch size (mean and 95% CI over seeds)")
    return save(fig, path)


def lr_schedules(history: pd.DataFrame, path: Path, limit: int = 12) -> Path:
    """Every distinct LR schedule of the study (seed-averaged LR per epoch)."""
    theme()
    curves = history.groupby(["experiment", "epoch"], sort=False)["lr"].mean().reset_index()
    seen, keep = set(), []
    for exp, frame in curves.groupby("experiment", sort=False):
        key = tuple(np.round(frame["lr"].to_numpy(), 12))
        if key not in seen:
            seen.add(key)
            keep.append(exp)
    curves = curves[curves["experiment"].isin(keep[:limit])]
    fig, ax = subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=curves, x="epoch", y="lr", hue="experiment", marker="o", ax=ax)
    ax.set_yscale("log")
    epoch_axis(ax, curves["epoch"])
    ax.set_ylabel("learning rate (log scale)")
    ax.set_title(
        f"Distinct learning-rate schedules ({len(keep)} of "
        f"{history['experiment'].nunique()} experiments)"
    )
    ax.legend(fontsize="x-small", title="")
    return save(fig, path)


def gradient_flow_run(layers: pd.DataFrame, title: str, path: Path) -> Path:
    """One run: mean |grad| and ||dW||/||W|| per layer (rows) and step (columns)."""
    theme()
    fig, axes = subplots(1, 2, figsize=(14, max(3.5, 0.28 * layers["layer"].nunique())))
    order = list(dict.fromkeys(layers["layer"]))
    for ax, column, name in (
        (axes[0], "grad_abs_mean", "log10 mean |grad|"),
        (axes[1], "update_ratio", "log10 ||ΔW|| / ||W||"),
    ):
        table = layers.pivot_table(
            index="layer", columns="step", values=column, aggfunc="mean"
        ).reindex(order)
        sns.heatmap(log10(table), cmap="magma", ax=ax, cbar_kws={"label": name, "pad": 0.02})
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("")
        ax.set_title(name)
    fig.suptitle(title)
    return save(fig, path)


def early_stopping(summary: pd.DataFrame, experiments: list[str], path: Path) -> Path:
    """Epochs run (grey bars, mean over seeds) and the best validation epoch of every run
    (dots, coloured by whether early stopping ended the run)."""
    theme()
    ok = ok_runs(summary).copy()
    ok["stopped early"] = (
        ok["stopped_early"]
        .astype(str)
        .str.lower()
        .map({"true": "yes", "1": "yes", "1.0": "yes"})
        .fillna("no")
    )
    order = [e for e in experiments if e in set(ok["experiment"])]
    fig, ax = subplots(figsize=(8, max(3, 0.35 * len(order) + 1)))
    sns.barplot(
        data=ok,
        y="experiment",
        x="epochs_run",
        order=order,
        errorbar=None,
        color="0.85",
        ax=ax,
        label="epochs run (mean)",
    )
    sns.stripplot(
        data=ok,
        y="experiment",
        x="best_epoch",
        order=order,
        hue="stopped early",
        hue_order=["no", "yes"],
        ax=ax,
        size=6,
        jitter=False,
        palette="Set1",
    )
    integer_ticks(ax.xaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel("")
    ax.set_title("Early stopping: best validation epoch per run (dots) and epochs run (bars)")
    ax.legend(
        fontsize="small", title="dots: stopped early?", loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    return save(fig, path)


def cost(summary: pd.DataFrame, metric: str, path: Path) -> Path:
    """Cost against quality per experiment: time per epoch, peak memory and throughput."""
    return save(cost_figure(summary, metric), path)


def cost_figure(summary: pd.DataFrame, metric: str):
    """One dot per experiment, named by its label; colour = group."""
    theme()
    ok = ok_runs(summary)
    means = (
        ok.groupby("experiment", sort=False)
        .agg(
            metric=(metric, "mean"),
            time=("time_per_epoch_s", "mean"),
            memory=("peak_memory_mb", "mean"),
            throughput=("throughput_samples_per_s", "mean"),
            group=("group", "first"),
            name=("label", "first") if "label" in ok else ("experiment", "first"),
        )
        .reset_index()
    )
    fig, axes = subplots(1, 3, figsize=(17, 5.2))
    for ax, column, name in (
        (axes[0], "time", "time per epoch (s)"),
        (axes[1], "memory", "peak memory (MiB)"),
        (axes[2], "throughput", "throughput (samples/s)"),
    ):
        sns.scatterplot(
            data=means, x=column, y="metric", hue="group", ax=ax, s=50, legend=ax is axes[0]
        )
        ax.set_xlabel(name)
        ax.set_ylabel(wrap(f"{label(metric)}, mean over seeds", 30))
        ax.margins(x=0.15, y=0.08)  # room for the names at the edges
    if axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "upper left", bbox_to_anchor=(0, -0.18), ncol=3, title="group")
    for ax, column in zip(axes, ("time", "memory", "throughput"), strict=True):
        label_points(ax, means[column], means["metric"], means["name"])
    fig.suptitle("Cost vs quality, one dot per experiment (means over seeds), named by its label")
    return fig
