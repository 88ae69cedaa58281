"""The overview under "Recommended configuration": every experiment of every group, mean and
95% t-interval over seeds drawn from the analysis' own level table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from hpstudy.analysis import t_interval
from hpstudy.figures.layout import save
from hpstudy.figures.style import label, number, ok_runs, subplots, theme


def overview(
    summary: pd.DataFrame,
    groups: dict[str, list[str]],
    metric: str,
    path: Path,
    levels: list[dict] | None = None,
) -> Path:
    """One panel per group: the metric per experiment, mean and 95% CI over seeds, drawn
    from the analysis' level table (`levels`, the numbers in the report's tables)."""
    return save(overview_figure(summary, groups, metric, levels), path)


def overview_figure(
    summary: pd.DataFrame,
    groups: dict[str, list[str]],
    metric: str,
    levels: list[dict] | None = None,
):
    theme()
    ok = ok_runs(summary)
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
    fig, axes = subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (group, experiments) in zip(axes.flat, groups.items(), strict=False):
        frame = ok[ok["group"] == group]
        order = [e.split("-", 1)[1] for e in experiments]
        if frame.empty:
            ax.set_title(f"{group} (no finished runs)")
            continue
        table = {lv["experiment"]: lv for lv in levels if lv.get("group", group) == group}
        rows = [table.get(e, {}) for e in experiments]
        mean = np.array([number(r.get("mean")) for r in rows])
        lo = np.array([number(r.get("ci_low")) for r in rows])
        hi = np.array([number(r.get("ci_high")) for r in rows])
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
