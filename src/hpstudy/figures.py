"""Seaborn figures for the report: PNG files, readable at a glance, with axis units.

Every figure is drawn from tidy frames (summary.csv rows, per-epoch histories, per-layer
diagnostics). Which figures a study gets depends on the columns its groups vary: generic
plots per group factor, plus special plots when a group varies batch size and LR, gradient
accumulation, workers x cleanup, or the scheduler (see `report.plan_figures`).
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hpstudy.analysis import t_interval  # noqa: E402
from hpstudy.atomic import atomic_path  # noqa: E402

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


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def _subplots(*args, **kwargs):
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


def _renderer(fig):
    """The renderer that measures text (an Agg figure's own; any figure's after drawing)."""
    canvas = fig.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else fig._get_renderer()


class FigureOverlapWarning(UserWarning):
    """Two labels of a saved figure overlap; the report's figures must read cleanly."""


def _tick_labels(ax, which: str) -> list:
    """The tick labels an axis draws: non-empty, visible, at ticks inside the view."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    span = (hi - lo) * 1e-9
    out = []
    for locs, labels in (
        (axis.get_majorticklocs(), axis.get_majorticklabels()),
        (axis.get_minorticklocs(), axis.get_minorticklabels()),
    ):
        for loc, text in zip(locs, labels, strict=False):
            if text.get_visible() and text.get_text() and lo - span <= loc <= hi + span:
                out.append(text)
    return out


def _measure(texts, renderer) -> list[tuple]:
    """Each text measured once: (text, window box, rotation mod 180, anchor in pixels)."""
    return [
        (
            t,
            t.get_window_extent(renderer),
            t.get_rotation() % 180,
            t.get_transform().transform(t.get_position()),
        )
        for t in texts
    ]


def _overlapping_pairs(measured: list[tuple], renderer) -> list[tuple]:
    """Pairs of measured texts that overlap. Tick labels of one axis slanted alike overlap
    only when their baselines are closer than a line of text, whatever their bounding boxes."""
    pairs = []
    for i, (a, box_a, rot_a, at_a) in enumerate(measured):
        for b, box_b, rot_b, at_b in measured[i + 1 :]:
            slanted = rot_a == rot_b and rot_a not in (0, 90)
            if slanted and getattr(a, "_hp_tick", None) == getattr(b, "_hp_tick", 0):
                along = np.hypot(*(at_a - at_b)) * abs(np.sin(np.radians(rot_a)))
                height = renderer.points_to_pixels(min(a.get_fontsize(), b.get_fontsize()))
                if along < height:
                    pairs.append((a, b))
            elif box_a.width > 0 and box_b.width > 0 and box_a.overlaps(box_b):
                pairs.append((a, b))
    return pairs


def figure_labels(fig) -> list:
    """The labels of a figure: suptitle and figure texts, and per axes (colour bars
    included) its title, axis labels and tick labels. Annotations inside a plot (heat-map
    cells, the cost plot's experiment names) are data, not labels."""
    texts = [t for t in fig.texts if t.get_visible() and t.get_text()]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if text.get_visible() and text.get_text():
                texts.append(text)
        for which in ("x", "y"):
            for text in _tick_labels(ax, which):
                text._hp_tick = (i, which)  # tick labels of one axis, for _overlapping_pairs
                texts.append(text)
    return texts


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of labels of a drawn figure that overlap (empty when the figure reads cleanly)."""
    renderer = _renderer(fig)
    pairs = _overlapping_pairs(_measure(figure_labels(fig), renderer), renderer)
    return [(a.get_text(), b.get_text()) for a, b in pairs]


def _unclutter_x_ticks(fig) -> None:
    """Slant (45°, then 90°) the x tick labels of any axes whose labels run together; the
    figure is drawn (laid out) when this returns."""
    for angle in (45, 90, None):
        fig.draw_without_rendering()
        if angle is None:
            return
        renderer = _renderer(fig)
        changed = False
        for i, ax in enumerate(fig.axes):
            labels = _tick_labels(ax, "x") if ax.get_visible() else []
            for label_ in labels:
                label_._hp_tick = (i, "x")
            if _overlapping_pairs(_measure(labels, renderer), renderer):
                changed = True
                for text in ax.get_xticklabels():
                    text.set_rotation(angle)
                    text.set_horizontalalignment("right" if angle != 90 else "center")
                    text.set_rotation_mode("anchor" if angle != 90 else "default")
        if not changed:
            return


def figure_title(fig) -> str:
    """The figure's suptitle, else its panels' titles joined (kept in the PNG's metadata)."""
    if fig.get_suptitle():
        return fig.get_suptitle()
    return " | ".join(ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title())


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _unclutter_x_ticks(fig)  # lays the figure out
    overlaps = overlapping_labels(fig)
    if overlaps:
        warnings.warn(
            FigureOverlapWarning(f"{path.name}: overlapping labels {overlaps[:4]}"), stacklevel=2
        )
    fig.set_layout_engine("none")  # keep the layout just checked; savefig need not redo it
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(
            tmp, dpi=110, bbox_inches="tight", format="png", metadata={"Title": figure_title(fig)}
        )
    plt.close(fig)
    return path


def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["status"] == "ok"]


def overview(
    summary: pd.DataFrame,
    groups: dict[str, list[str]],
    metric: str,
    path: Path,
    levels: list[dict] | None = None,
) -> Path:
    """One panel per group: the metric per experiment, mean and 95% CI over seeds, drawn
    from the analysis' level table (`levels`, the numbers in the report's tables)."""
    return _save(overview_figure(summary, groups, metric, levels), path)


def overview_figure(
    summary: pd.DataFrame,
    groups: dict[str, list[str]],
    metric: str,
    levels: list[dict] | None = None,
):
    _theme()
    ok = _ok(summary)
    if levels is None:  # no analysis given: the same t-intervals, computed here
        levels = []
        for group, experiments in groups.items():
            for exp in experiments:
                vals = ok.loc[ok["experiment"] == exp, metric].to_numpy(dtype=float)
                mean, _, lo, hi = t_interval(vals)
                levels.append(
                    {"group": group, "experiment": exp, "mean": mean, "ci_low": lo, "ci_high": hi}
                )
    n = len(groups)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = _subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (group, experiments) in zip(axes.flat, groups.items(), strict=False):
        frame = ok[ok["group"] == group]
        order = [e.split("-", 1)[1] for e in experiments]
        if frame.empty:
            ax.set_title(f"{group} (no finished runs)")
            continue
        table = {lv["experiment"]: lv for lv in levels if lv.get("group", group) == group}
        rows = [table.get(e, {}) for e in experiments]
        mean = np.array([_num(r.get("mean")) for r in rows])
        lo = np.array([_num(r.get("ci_low")) for r in rows])
        hi = np.array([_num(r.get("ci_high")) for r in rows])
        x = np.arange(len(order))
        ax.errorbar(x, mean, yerr=np.vstack([mean - lo, hi - mean]), fmt="o", color="C0", capsize=5)
        ax.set_xticks(x, order)
        sns.stripplot(
            data=frame,
            x="label",
            y=metric,
            order=order,
            ax=ax,
            color="0.4",
            size=3,
            alpha=0.6,
            jitter=False,
        )
        ax.set_title(group)
        ax.set_xlabel("")
        ax.set_ylabel(label(metric))
        ax.tick_params(axis="x", rotation=35)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(
        f"{label(metric)}: mean and 95% t-interval over seeds (as in the tables); "
        "dots are single runs"
    )
    return fig


def _num(value) -> float:
    return float(value) if value is not None else np.nan


def factor_effect(
    runs: pd.DataFrame, factor: str, metric: str, secondary: str | None, path: Path, title: str
) -> Path:
    """The metric against one factor's values (mean and 95% CI over seeds, dots = runs); a
    second panel on a log axis for the secondary metric (MSE or cross-entropy)."""
    return _save(factor_effect_figure(runs, factor, metric, secondary, title), path)


def factor_effect_figure(
    runs: pd.DataFrame, factor: str, metric: str, secondary: str | None, title: str
):
    """A line joins the means only where the factor is numeric (batch size, lr): a line
    between categories (optimizers, schedules) would suggest an order that is not there."""
    _theme()
    ok = _ok(runs).copy()
    numeric = pd.api.types.is_numeric_dtype(ok[factor]) and ok[factor].nunique() > 1
    columns = [c for c in (metric, secondary) if c and c in ok]
    fig, axes = _subplots(1, len(columns), figsize=(5.5 * len(columns), 4), squeeze=False)
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


def lr_vs_metric(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """Learning rate against the metric, one line per batch size (mean and 95% CI)."""
    _theme()
    ok = _ok(runs).copy()
    ok["batch size"] = ok["batch_size"].astype(int).astype(str)
    fig, ax = _subplots(figsize=(6.5, 4.2))
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
    return _save(fig, path)


def accumulation_bars(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """True batches vs gradient accumulation at the same effective batch size."""
    _theme()
    ok = _ok(runs).copy()
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
    fig, ax = _subplots(figsize=(7, 4.2))
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
    return _save(fig, path)


def workers_cleanup(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """Heat maps over DataLoader workers x cleanup interval: the metric and time per epoch."""
    _theme()
    ok = _ok(runs)
    columns = [c for c in (metric, "time_per_epoch_s") if c in ok]
    fig, axes = _subplots(1, len(columns), figsize=(5.8 * len(columns), 4), squeeze=False)
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
    return _save(fig, path)


def scheduler_comparison(
    runs: pd.DataFrame, history: pd.DataFrame, metric: str, path: Path
) -> Path:
    """The metric per scheduler (mean and 95% CI) and each scheduler's LR per epoch."""
    return _save(scheduler_comparison_figure(runs, history, metric), path)


def scheduler_comparison_figure(runs: pd.DataFrame, history: pd.DataFrame, metric: str):
    _theme()
    ok = _ok(runs)
    fig, axes = _subplots(1, 2, figsize=(12, 4.2))
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


def lr_schedules(history: pd.DataFrame, path: Path, limit: int = 12) -> Path:
    """Every distinct LR schedule of the study (seed-averaged LR per epoch)."""
    _theme()
    curves = history.groupby(["experiment", "epoch"], sort=False)["lr"].mean().reset_index()
    seen, keep = set(), []
    for exp, frame in curves.groupby("experiment", sort=False):
        key = tuple(np.round(frame["lr"].to_numpy(), 12))
        if key not in seen:
            seen.add(key)
            keep.append(exp)
    curves = curves[curves["experiment"].isin(keep[:limit])]
    fig, ax = _subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=curves, x="epoch", y="lr", hue="experiment", marker="o", ax=ax)
    ax.set_yscale("log")
    epoch_axis(ax, curves["epoch"])
    ax.set_ylabel("learning rate (log scale)")
    ax.set_title(
        f"Distinct learning-rate schedules ({len(keep)} of "
        f"{history['experiment'].nunique()} experiments)"
    )
    ax.legend(fontsize="x-small", title="")
    return _save(fig, path)


CURVES_TITLE = "per-epoch curves (mean and 95% band over seeds)"
GRADIENTS_TITLE = "gradient statistics per epoch (mean and 95% band over seeds)"


def learning_curves(
    history: pd.DataFrame, group: str, columns: list[str], path: Path, title: str = CURVES_TITLE
) -> Path:
    """Per-epoch curves of one group: mean and 95% band over seeds, one line per level."""
    return _save(learning_curves_figure(history, group, columns, title), path)


def learning_curves_figure(
    history: pd.DataFrame, group: str, columns: list[str], title: str = CURVES_TITLE
):
    _theme()
    frame = history[history["group"] == group]
    columns = [c for c in columns if c in frame and frame[c].notna().any()]
    cols = min(len(columns), 3)
    rows = (len(columns) + cols - 1) // cols
    fig, axes = _subplots(rows, cols, figsize=(5.3 * cols, 3.8 * rows), squeeze=False)
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


def _log10(values: pd.Series) -> pd.Series:
    values = values.astype(float)
    return np.log10(values.where(values > 0))


def gradient_flow_run(layers: pd.DataFrame, title: str, path: Path) -> Path:
    """One run: mean |grad| and ||dW||/||W|| per layer (rows) and step (columns)."""
    _theme()
    fig, axes = _subplots(1, 2, figsize=(14, max(3.5, 0.28 * layers["layer"].nunique())))
    order = list(dict.fromkeys(layers["layer"]))
    for ax, column, name in (
        (axes[0], "grad_abs_mean", "log10 mean |grad|"),
        (axes[1], "update_ratio", "log10 ||ΔW|| / ||W||"),
    ):
        table = layers.pivot_table(
            index="layer", columns="step", values=column, aggfunc="mean"
        ).reindex(order)
        sns.heatmap(_log10(table), cmap="magma", ax=ax, cbar_kws={"label": name, "pad": 0.02})
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("")
        ax.set_title(name)
    fig.suptitle(title)
    return _save(fig, path)


def gradient_flow_group(layers: pd.DataFrame, group: str, path: Path) -> Path:
    """One group: mean |grad| and ||dW||/||W|| per layer (rows) and level (columns), averaged
    over recorded steps and seeds."""
    _theme()
    frame = layers[layers["group"] == group]
    order = list(dict.fromkeys(frame["layer"]))
    levels = list(dict.fromkeys(frame["label"]))
    fig, axes = _subplots(
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
            _log10(table),
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
    return _save(fig, path)


def early_stopping(summary: pd.DataFrame, experiments: list[str], path: Path) -> Path:
    """Epochs run (grey bars, mean over seeds) and the best validation epoch of every run
    (dots, coloured by whether early stopping ended the run)."""
    _theme()
    ok = _ok(summary).copy()
    ok["stopped early"] = (
        ok["stopped_early"]
        .astype(str)
        .str.lower()
        .map({"true": "yes", "1": "yes", "1.0": "yes"})
        .fillna("no")
    )
    order = [e for e in experiments if e in set(ok["experiment"])]
    fig, ax = _subplots(figsize=(8, max(3, 0.35 * len(order) + 1)))
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
    return _save(fig, path)


def cost(summary: pd.DataFrame, metric: str, path: Path) -> Path:
    """Cost against quality per experiment: time per epoch, peak memory and throughput."""
    return _save(cost_figure(summary, metric), path)


# where an annotation may sit relative to its dot (points), tried in this order
LABEL_OFFSETS = [(dx, dy) for dy in (3, -11, 13, -21, 23, -31) for dx in (5, -5)]


def label_points(ax, xs, ys, names, fontsize: float = 7) -> list:
    """Write `names` next to the dots (xs, ys) of `ax`, each at the first nearby offset where
    it overlaps neither an earlier name nor a dot (greedy; the last offset when all are taken)."""
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = _renderer(fig)
    radius = renderer.points_to_pixels(3.5)
    dots = [ax.transData.transform((x, y)) for x, y in zip(xs, ys, strict=True)]
    taken = [
        matplotlib.transforms.Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
        for x, y in dots
    ]
    texts = []
    for x, y, name in zip(xs, ys, names, strict=True):
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(
                name,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=fontsize,
                ha="left" if dx > 0 else "right",
                va="bottom",
            )
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(t) for t in taken) or (dx, dy) == LABEL_OFFSETS[-1]:
                break
            text.remove()
        taken.append(box)
        texts.append(text)
    return texts


def cost_figure(summary: pd.DataFrame, metric: str):
    """One dot per experiment, named by its label; colour = group."""
    _theme()
    ok = _ok(summary)
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
    fig, axes = _subplots(1, 3, figsize=(17, 5.2))
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


# -- whole-study views: every run, the variance each term explains, the run timeline ----------
def _axis(values: pd.Series) -> tuple[np.ndarray, list[float], list[str], str]:
    """One parallel-coordinates axis: positions in [0, 1], tick positions and labels, and a
    note on the scale. Numbers spanning more than 10x (all positive) go on a log scale;
    text, booleans and mixed values are categories, one labelled tick each."""
    numbers = pd.to_numeric(values, errors="coerce")
    numeric = numbers.notna().all() and not pd.api.types.is_bool_dtype(values)
    if not numeric:
        text = values.astype(str).where(values.notna(), "n/a")
        cats = list(dict.fromkeys(sorted(text.unique(), key=_natural)))
        step = 1 / max(len(cats) - 1, 1)
        pos = {c: (i * step if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
        return text.map(pos).to_numpy(float), list(pos.values()), cats, ""
    x = numbers.to_numpy(float)
    log = x.min() > 0 and x.max() / x.min() > 10
    t = np.log10(x) if log else x
    lo, hi = t.min(), t.max()
    span = hi - lo if hi > lo else 1.0
    unique = np.unique(x)
    ticks = (
        unique
        if len(unique) <= 8
        else (10 ** np.linspace(lo, hi, 5) if log else np.linspace(lo, hi, 5))
    )
    tt = np.log10(ticks) if log else ticks
    at = (tt - lo) / span if hi > lo else np.full(len(ticks), 0.5)
    pos = (t - lo) / span if hi > lo else np.full(len(t), 0.5)
    return pos, list(at), [f"{v:.3g}" for v in ticks], " (log)" if log else ""


def _natural(text: str):
    number = pd.to_numeric(text, errors="coerce")
    return (0, float(number), "") if pd.notna(number) else (1, 0.0, text)


def parallel_coordinates(
    runs: pd.DataFrame, factors: list[str], metric: str, higher_is_better: bool, path: Path
) -> Path:
    """Every finished run as one line through one axis per factor that varies in the study
    and, last, the primary metric; coloured by the metric (the best runs drawn on top)."""
    return _save(parallel_coordinates_figure(runs, factors, metric, higher_is_better), path)


def parallel_coordinates_figure(
    runs: pd.DataFrame, factors: list[str], metric: str, higher_is_better: bool = True
):
    from matplotlib.collections import LineCollection

    _theme()
    runs = runs.dropna(subset=[metric])
    columns = [*factors, metric]
    axes_data = [_axis(runs[c]) for c in columns]
    ys = np.column_stack([a[0] for a in axes_data])
    values = runs[metric].to_numpy(float)
    order = np.argsort(values if higher_is_better else -values)  # best drawn last, on top
    fig, ax = plt.subplots(figsize=(max(6.5, 1.7 * len(columns) + 2.5), 4.8))
    norm = plt.Normalize(values.min(), values.max())
    cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r")
    xs = np.arange(len(columns))
    lines = LineCollection(
        [np.column_stack([xs, ys[i]]) for i in order],
        colors=cmap(norm(values[order])),
        linewidths=1.2,
        alpha=0.75,
    )
    ax.add_collection(lines)
    for x, (_, at, labels, _) in zip(xs, axes_data, strict=True):
        ax.axvline(x, color="0.3", linewidth=1)
        for y, text in zip(at, labels, strict=True):
            ax.plot([x - 0.03, x], [y, y], color="0.3", linewidth=1)
            ax.text(
                x - 0.05,
                y,
                text,
                ha="right",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5},
            )
    ax.set_xlim(-0.5, len(columns) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, [label(c) + a[3] for c, a in zip(columns, axes_data, strict=True)])
    ax.tick_params(axis="x", labelsize=8.5)
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(label(metric))
    ax.set_title(
        f"Every finished run ({len(runs)}): factor values to {label(metric)}; "
        f"colour = {metric} ({'higher' if higher_is_better else 'lower'} is better)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def variance_share(variance: dict[str, dict], metric: str, path: Path) -> Path:
    """Per group, the share of the variance of the metric each factor, interaction, the seed
    and the residual explain: eta squared from the group's own fitted model (stats.json)."""
    return _save(variance_share_figure(variance, metric), path)


def _term_colour(term: str) -> str:
    if term == "residual":
        return "0.75"
    if term == "seed":
        return "0.45"
    if term.startswith("not attributable"):
        return "#d9d9d9"
    return "C1" if ":" in term else "C0"


def variance_share_figure(variance: dict[str, dict], metric: str):
    _theme()
    n = len(variance)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    most = max(len(v["terms"]) for v in variance.values())
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.6 * cols, (0.42 * most + 1.3) * rows), squeeze=False
    )
    for ax, (group, res) in zip(axes.flat, variance.items(), strict=False):
        terms = res["terms"]
        names = [t["term"] for t in terms]
        shares = [100 * (t["share"] if t["share"] is not None else np.nan) for t in terms]
        y = np.arange(len(terms))
        ax.barh(y, shares, color=[_term_colour(t) for t in names])
        ax.set_yticks(y, names, fontsize=8.5)
        ax.invert_yaxis()
        for yi, share in zip(y, shares, strict=True):
            if np.isfinite(share):
                ax.text(max(share, 0) + 1.5, yi, f"{share:.1f}%", va="center", fontsize=8)
        ax.set_xlim(min(0, np.nanmin(shares) - 5), 115)
        ax.set_xlabel("share of the variance (%)")
        ax.set_title(f"{group} (n = {res['n']})", fontsize=10)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(
        f"Share of the variance of {label(metric)} per term: SS_term / SS_total of each "
        "group's model (type II ANOVA)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


OUTCOME_COLOURS = {
    "finished": "#4c9a2a",
    "interrupted": "#e69f00",
    "failed": "#c0392b",
    "killed": "#7b3294",
    "running": "#3a7dc9",
}


def _lanes(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """A row per host (and GPU); attempts that overlap in time on one host get more rows
    (greedy: the fewest rows with no overlap): (host or host / GPU, slot) per attempt."""
    names = frame["host"].fillna("unknown host").astype(str)
    names = [
        n if pd.isna(g) or g == "" else f"{n} / GPU {g}"
        for n, g in zip(names, frame["gpu"], strict=True)
    ]
    lanes, ends = [("", 0)] * len(frame), {}
    for i in np.argsort(frame["start"].to_numpy(float), kind="stable"):
        start = frame["start"].iloc[i]
        stop = frame["end"].iloc[i] if pd.notna(frame["end"].iloc[i]) else start
        free = ends.setdefault(names[i], [])
        k = next((k for k, end in enumerate(free) if end <= start), len(free))
        if k == len(free):
            free.append(stop)
        free[k] = stop
        lanes[i] = (names[i], k + 1)
    return lanes


def timeline(frame: pd.DataFrame, path: Path) -> Path:
    """A Gantt chart of every attempt: a row per host (and GPU), a bar from start to end
    coloured by how the attempt ended, the batch queue wait as a pale bar before it where
    known; minutes from the study's first submission or start."""
    return _save(timeline_figure(frame), path)


def timeline_figure(frame: pd.DataFrame):
    from matplotlib.patches import Patch

    _theme()
    frame = frame.reset_index(drop=True)
    lanes = _lanes(frame)
    slots = pd.Series([k for _, k in lanes]).groupby([n for n, _ in lanes]).max()
    order = sorted(set(lanes))
    row = {lane: i for i, lane in enumerate(order)}
    names = [n if slots[n] == 1 else f"{n}, slot {k}" for n, k in order]
    t0 = np.nanmin(np.r_[frame["start"].to_numpy(float), frame["submitted"].to_numpy(float)])
    start = (frame["start"] - t0) / 60
    end = (frame["end"] - t0) / 60
    wait = pd.to_numeric(frame.get("queue_wait_s"), errors="coerce") / 60
    span = float(np.nanmax(np.r_[end.to_numpy(float), start.to_numpy(float)])) or 1.0
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(order) + 1.8))
    for i in range(len(frame)):
        y = row[lanes[i]]
        colour = OUTCOME_COLOURS.get(frame["outcome"].iloc[i], "0.5")
        if pd.notna(wait.iloc[i]) and wait.iloc[i] > 0:
            ax.barh(y, wait.iloc[i], left=start.iloc[i] - wait.iloc[i], color=colour, alpha=0.25)
        if pd.isna(end.iloc[i]):  # killed without a word: its end is unknown
            ax.plot(start.iloc[i], y, marker=">", color=colour, markersize=8)
            continue
        width = max(end.iloc[i] - start.iloc[i], span / 400)
        ax.barh(y, width, left=start.iloc[i], color=colour, edgecolor="white", linewidth=0.5)
    ax.set_yticks(range(len(order)), names, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(left=min(0.0, float(np.nanmin(start - wait.fillna(0)))))
    ax.set_xlabel("minutes from the study's first submission or start")
    outcomes = [o for o in OUTCOME_COLOURS if (frame["outcome"] == o).any()]
    handles = [Patch(color=OUTCOME_COLOURS[o], label=o) for o in outcomes]
    known = wait.notna().any()
    handles.append(
        Patch(color="0.5", alpha=0.25, label="queue wait" if known else "queue wait: not known")
    )
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    runs = len(frame[["config_hash", "seed"]].drop_duplicates())
    ax.set_title(
        f"Run timeline: {len(frame)} attempts of {runs} runs; a bar per attempt, "
        "coloured by how it ended",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
