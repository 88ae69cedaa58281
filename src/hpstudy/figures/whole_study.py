"""The figures of the "Whole study" section: every finished run in parallel coordinates, the
share of the metric's variance each term of each group's model explains, and the timeline of
every attempt by host."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hpstudy.figures.layout import save
from hpstudy.figures.style import label, theme


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
    return save(parallel_coordinates_figure(runs, factors, metric, higher_is_better), path)


def parallel_coordinates_figure(
    runs: pd.DataFrame, factors: list[str], metric: str, higher_is_better: bool = True
):
    from matplotlib.collections import LineCollection

    theme()
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
    return save(variance_share_figure(variance, metric), path)


def _term_colour(term: str) -> str:
    if term == "residual":
        return "0.75"
    if term == "seed":
        return "0.45"
    if term.startswith("not attributable"):
        return "#d9d9d9"
    return "C1" if ":" in term else "C0"


def variance_share_figure(variance: dict[str, dict], metric: str):
    theme()
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
    return save(timeline_figure(frame), path)


def timeline_figure(frame: pd.DataFrame):
    from matplotlib.patches import Patch

    theme()
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
