"""Which figures a study's report gets, and in which section: decided from the columns its
groups vary and the tables aggregate wrote, then drawn by hpstudy.figures.

- "Recommended configuration": the overview (every experiment, mean and 95% CI);
- each "Group" section (`group_figures`): the metric against each factor the group varies,
  unless a special view shows it (true vs accumulated batches, DataLoader workers x cleanup,
  batch size x LR, schedulers), its learning curves, gradient statistics and gradient flow;
- below "Training diagnostics" (`study_figures`): LR vs metric by batch size, the distinct LR
  schedules, early stopping, cost vs quality, the recommended run's gradient flow;
- "Whole study" (`whole_study`): parallel coordinates, variance shares, the run timeline.

Each figure is a record {key, path, title, group}: `group` is the group whose section shows
it, None for the study-wide ones and WHOLE_STUDY for the "Whole study" section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy import figures
from hpstudy.metrics import LOWER_IS_BETTER, metric_columns

# per-epoch gradient statistics of history.csv (hpstudy.diagnostics), as the report shows them
DIAGNOSTIC_COLUMNS = ["grad_norm_mean", "grad_norm_cv", "grad_noise_scale", "grad_variance"]
WHOLE_STUDY = "whole study"  # the `group` of the figures of the "Whole study" section


def varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].astype(str).nunique() > 1


class Plan:
    """The figures drawn so far, in the order the report shows them."""

    def __init__(self, doc: dict[str, Any], fig_dir: Path):
        self.doc, self.fig_dir = doc, Path(fig_dir)
        self.metric = doc["metric"]
        self.figures: list[dict[str, Any]] = []

    def path(self, key: str) -> Path:
        return self.fig_dir / f"{key}.png"

    def add(self, key: str, path: Path, title: str, group: str | None = None) -> None:
        self.figures.append({"key": key, "path": path, "title": title, "group": group})


def plan_figures(
    doc: dict[str, Any],
    summary: pd.DataFrame,
    histories: pd.DataFrame,
    layers: pd.DataFrame,
    best: dict[str, Any] | None,
    fig_dir: Path,
    levels: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Draw every figure this study's data supports (the "Whole study" section apart:
    `whole_study`); returns [{key, path, title, group}]."""
    plan = Plan(doc, fig_dir)
    metric = plan.metric
    groups = {g: spec["experiments"] for g, spec in doc["groups"].items()}
    plan.add(
        "overview",
        figures.overview(summary, groups, metric, plan.path("overview"), levels=levels),
        f"Overview: {metric} per experiment, mean and 95% t-interval over seeds (as in the tables)",
    )
    ok = summary[summary["status"] == "ok"]
    for group, spec in doc["groups"].items():
        good = ok[ok["group"] == group]
        if not good.empty:
            group_figures(plan, group, spec, summary, histories, layers)
    study_figures(plan, summary, histories, layers, best)
    return plan.figures


def group_figures(
    plan: Plan,
    group: str,
    spec: dict[str, Any],
    summary: pd.DataFrame,
    histories: pd.DataFrame,
    layers: pd.DataFrame,
) -> None:
    """The figures of one group's section, for a group with finished runs."""
    metric = plan.metric
    runs = summary[summary["group"] == group]
    good = runs[runs["status"] == "ok"]
    factors = [f for f in spec["factors"] if varies(good, f)]
    if not _special_views(plan, group, factors, runs, good):
        # a generic metric-vs-factor plot where no special plot shows this group's factor
        secondary = "test_mse" if plan.doc["task"] == "regression" else "test_loss"
        if secondary == metric:
            secondary = metric_columns(plan.doc["task"])[0]
        for factor in factors:
            key = f"factor_{group}_{factor}"
            plan.add(
                key,
                figures.factor_effect(
                    runs,
                    factor,
                    metric,
                    secondary if secondary in runs else None,
                    plan.path(key),
                    f"{group}: {metric} vs {factor}",
                ),
                f"{group}: {metric} against {factor}",
                group,
            )
    hist = histories[histories["group"] == group] if not histories.empty else histories
    if "scheduler" in factors:
        plan.add(
            f"scheduler_{group}",
            figures.scheduler_comparison(runs, hist, metric, plan.path(f"scheduler_{group}")),
            f"{group}: scheduler comparison and LR per epoch",
            group,
        )
    if not hist.empty:
        _curves(plan, group, histories, hist)
    if not layers.empty and (layers["group"] == group).any():
        plan.add(
            f"gradflow_{group}",
            figures.gradient_flow_group(layers, group, plan.path(f"gradflow_{group}")),
            f"{group}: gradient flow and weight updates per layer",
            group,
        )


def _special_views(
    plan: Plan, group: str, factors: list[str], runs: pd.DataFrame, good: pd.DataFrame
) -> bool:
    """Draw the special views of the group's factors; True when one of them (or a view drawn
    elsewhere: LR x batch size, the scheduler comparison) shows the metric against them."""
    special = False
    if "grad_accum_steps" in factors and "batch_size" in good:
        special = True
        plan.add(
            f"accumulation_{group}",
            figures.accumulation_bars(runs, plan.metric, plan.path(f"accumulation_{group}")),
            f"{group}: true vs accumulated batches",
            group,
        )
    if {"num_workers", "cleanup_every"} <= set(factors):
        special = True
        plan.add(
            f"workers_cleanup_{group}",
            figures.workers_cleanup(runs, plan.metric, plan.path(f"workers_cleanup_{group}")),
            f"{group}: DataLoader workers × cleanup interval",
            group,
        )
    special |= {"batch_size", "lr"} <= set(factors)  # drawn once: lr_vs_metric (study_figures)
    special |= "scheduler" in factors  # scheduler_comparison shows the metric
    return special


def _curves(plan: Plan, group: str, histories: pd.DataFrame, hist: pd.DataFrame) -> None:
    """A group's learning curves and, where training recorded them, its gradient statistics
    per epoch."""
    columns = (
        ["train_loss", "val_loss", "val_r2"]
        if plan.doc["task"] == "regression"
        else ["train_loss", "val_loss", "val_accuracy", "val_top5"]
    )
    plan.add(
        f"curves_{group}",
        figures.learning_curves(histories, group, columns, plan.path(f"curves_{group}")),
        f"{group}: learning curves",
        group,
    )
    if any(c in hist and hist[c].notna().any() for c in DIAGNOSTIC_COLUMNS):
        plan.add(
            f"gradients_{group}",
            figures.learning_curves(
                histories,
                group,
                DIAGNOSTIC_COLUMNS,
                plan.path(f"gradients_{group}"),
                figures.GRADIENTS_TITLE,
            ),
            f"{group}: gradient statistics per epoch",
            group,
        )


def study_figures(
    plan: Plan,
    summary: pd.DataFrame,
    histories: pd.DataFrame,
    layers: pd.DataFrame,
    best: dict[str, Any] | None,
) -> None:
    """The study-wide figures shown below the "Training diagnostics" table."""
    metric, doc = plan.metric, plan.doc
    ok = summary[summary["status"] == "ok"]
    lr_groups = [g for g, spec in doc["groups"].items() if "lr" in spec["factors"]]
    lr_runs = ok[ok["group"].isin(lr_groups)]
    if varies(lr_runs, "lr") and "batch_size" in lr_runs:
        plan.add(
            "lr_vs_metric",
            figures.lr_vs_metric(lr_runs, metric, plan.path("lr_vs_metric")),
            f"Learning rate vs {metric}, coloured by batch size (groups varying lr)",
        )
    if not histories.empty and "lr" in histories:
        plan.add(
            "lr_schedules",
            figures.lr_schedules(histories, plan.path("lr_schedules")),
            "Learning-rate schedules (per epoch)",
        )
    if {"best_epoch", "epochs_run"} <= set(ok) and not ok.empty:
        experiments = [e for spec in doc["groups"].values() for e in spec["experiments"]]
        plan.add(
            "early_stopping",
            figures.early_stopping(summary, experiments, plan.path("early_stopping")),
            "Early stopping: best epoch per run and epochs run",
        )
    if {"time_per_epoch_s", "peak_memory_mb", "throughput_samples_per_s"} <= set(
        ok
    ) and not ok.empty:
        plan.add(
            "cost",
            figures.cost(summary, metric, plan.path("cost")),
            "Cost vs quality per experiment",
        )
    if best is not None and not layers.empty:
        run = layers[layers["experiment"] == best["experiment"]]
        if not run.empty:
            seed = run["seed"].min()
            plan.add(
                "gradflow_best",
                figures.gradient_flow_run(
                    run[run["seed"] == seed],
                    f"{best['experiment']} seed {seed}: gradient flow and weight updates",
                    plan.path("gradflow_best"),
                ),
                f"Recommended configuration ({best['experiment']}, seed {seed}): gradient "
                "flow and weight updates per layer and step",
            )


def study_factors(doc: dict[str, Any], runs: pd.DataFrame) -> list[str]:
    """The factors of every group, in study order, that take more than one value over the
    study's runs: the axes of the parallel-coordinates figure."""
    factors = dict.fromkeys(f for spec in doc["groups"].values() for f in spec["factors"])
    return [f for f in factors if varies(runs, f)]


def whole_study(
    doc: dict[str, Any],
    summary: pd.DataFrame,
    stats: dict[str, Any],
    timeline: pd.DataFrame,
    compute: pd.DataFrame,
    fig_dir: Path,
) -> dict[str, Any]:
    """The "Whole study" section: every finished run in parallel coordinates, the share of
    the metric's variance each term of each group's model explains (stats.json), the run
    timeline (timeline.csv) and the compute spent (compute.csv); all from aggregate."""
    metric = doc["metric"]
    ok = summary[summary["status"] == "ok"]
    if "config_hash" in ok:  # a run shared by several experiments is one run
        ok = ok.drop_duplicates(["config_hash", "seed"])
    figs: list[dict[str, Any]] = []
    factors = study_factors(doc, ok)
    if factors and metric in ok and ok[metric].notna().any():
        figs.append(
            {
                "key": "parallel_coordinates",
                "path": figures.parallel_coordinates(
                    ok,
                    factors,
                    metric,
                    metric not in LOWER_IS_BETTER,
                    fig_dir / "parallel_coordinates.png",
                ),
                "title": f"Every finished run: the factors that vary in the study to {metric}",
            }
        )
    variance = {g: res["variance"] for g, res in stats["groups"].items() if res.get("variance")}
    if variance:
        figs.append(
            {
                "key": "variance_share",
                "path": figures.variance_share(variance, metric, fig_dir / "variance_share.png"),
                "title": f"Share of the variance of {metric} each term explains, per group",
            }
        )
    if not timeline.empty:
        figs.append(
            {
                "key": "timeline",
                "path": figures.timeline(timeline, fig_dir / "timeline.png"),
                "title": "Run timeline: every attempt by host, start and end",
            }
        )
    for fig in figs:
        fig["group"] = WHOLE_STUDY
    waits = pd.to_numeric(timeline.get("queue_wait_s"), errors="coerce")
    return {
        "figures": figs,
        "factors": factors,
        "variance": variance,
        "no_variance": [g for g in doc["groups"] if g not in variance],
        "compute": compute.to_dict(orient="records"),
        "attempts": len(timeline),
        "hosts": sorted(timeline["host"].dropna().astype(str).unique()) if len(timeline) else [],
        "queue_waits": int(waits.notna().sum()) if len(timeline) else 0,
        "queue_wait_mean_s": float(waits.mean()) if len(timeline) and waits.notna().any() else None,
    }
