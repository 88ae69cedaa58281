"""Render the study report: Jinja2 markdown + an HTML rendering of the same text.

Inputs are the aggregation outputs only: summary.csv, study.json, groups/*.csv, stats.json,
curves.csv.gz (per-epoch history of every run), layers.csv.gz (per-layer diagnostics), and
experiments.tsv. Nothing here reads a run folder or a benchmark file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy import figures, paths
from hpstudy.aggregate import COST_METRICS
from hpstudy.analysis import ci_name
from hpstudy.analysis.wording import verdict_words
from hpstudy.atomic import write_text
from hpstudy.config import ignored_settings
from hpstudy.datasets import DATASET_TARGETS
from hpstudy.embed import embed_images
from hpstudy.formatting import fmt, fmt_p, fmt_signed, p_is
from hpstudy.integrity import read_csv, read_json
from hpstudy.metrics import LOWER_IS_BETTER, metric_columns, metric_units
from hpstudy.provenance import git_commit, package_versions

DIAGNOSTIC_COLUMNS = ["grad_norm_mean", "grad_norm_cv", "grad_noise_scale", "grad_variance"]


def read_table(path: str | Path | None, **kwargs) -> pd.DataFrame:
    """An aggregate table; an empty file (no diagnostics, say) is an empty frame."""
    if path is None or not Path(path).is_file():
        return pd.DataFrame()
    return read_csv(path, **kwargs)


def job_costs(summary: pd.DataFrame) -> pd.DataFrame:
    """Wall time and peak RSS of the training job of each run, as extract recorded them
    from the job's Snakemake benchmark (one job trains every seed of a configuration)."""
    columns = [c for c in ("job_wall_s", "job_max_rss_mb", "job_seeds") if c in summary]
    if "job_wall_s" not in columns:
        return pd.DataFrame()
    return summary[["experiment", "seed", *columns]].copy()


def experiment_diagnostics(
    summary: pd.DataFrame,
    histories: pd.DataFrame,
    benchmarks: pd.DataFrame,
    metric: str,
    experiments: list[str],
) -> list[dict[str, Any]]:
    """Per experiment, means over finished seeds: gradient statistics (last epoch),
    FLOPs, parameters, size, memory, speed and memory efficiency."""
    ok = summary[summary["status"] == "ok"]
    rows = []
    for exp in experiments:
        runs = ok[ok["experiment"] == exp]
        if runs.empty:
            continue
        row: dict[str, Any] = {"experiment": exp, "n": len(runs)}
        for column in (
            "parameters",
            "model_size_mb",
            "flops_forward_per_sample",
            "flops_train_per_sample",
            "peak_memory_mb",
            "throughput_samples_per_s",
            "time_per_epoch_s",
            "data_wait_fraction",
            "memory_efficiency",
            metric,
        ):
            row[column] = float(runs[column].mean()) if column in runs else math.nan
        if math.isfinite(row["parameters"]):
            row["parameters"] = int(round(row["parameters"]))
        if not histories.empty:
            hist = histories[
                (histories["experiment"] == exp) & histories["seed"].isin(runs["seed"])
            ]
            last = hist.sort_values("epoch").groupby("seed").tail(1)
            for column in DIAGNOSTIC_COLUMNS:
                row[column] = float(last[column].mean()) if column in last else math.nan
                # seeds with a value: B_noise is undefined (NaN) in an epoch whose gradient
                # pairs estimate |G|^2 <= 0, so its mean may rest on fewer seeds than n
                row[f"{column}_n"] = int(last[column].notna().sum()) if column in last else 0
        if not benchmarks.empty:
            bench = benchmarks[benchmarks["experiment"] == exp]
            row["job_wall_s"] = float(bench["job_wall_s"].mean()) if len(bench) else math.nan
        rows.append(row)
    return rows


def target(dataset: str, metrics: list[str]) -> dict[str, Any]:
    """What the models predict, in which units, and the units of each test metric."""
    what, units = DATASET_TARGETS.get(dataset, ("the dataset's target", ""))
    return {
        "what": what,
        "units": units,
        "metric_units": {m: metric_units(m, units) for m in metrics},
    }


def ignored_on_device(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Settings the runs asked for that did nothing on the device they ran on (mixed
    precision, channels_last or pin_memory on CPU, ...), with how many runs: read back
    through config.ignored_settings, the rule the Trainer and loaders follow."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in summary.to_dict(orient="records"):
        device = row.get("device")
        if not isinstance(device, str) or not device:
            continue
        try:
            ignored = ignored_settings(row, device)
        except KeyError:  # a summary from before these columns existed
            continue
        for name, why in ignored.items():
            entry = found.setdefault(
                (device, name),
                {"device": device, "setting": name, "value": row[name], "why": why, "runs": 0},
            )
            entry["runs"] += 1
    return list(found.values())


def missing_gradient_flow(
    doc: dict[str, Any], summary: pd.DataFrame, layers: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Per group, the experiments with finished runs but no per-layer diagnostics, and why:
    a run records them every `diagnostics_every` optimizer steps, so a run with fewer steps
    records none and would silently drop out of the gradient-flow figures."""
    ok = summary[summary["status"] == "ok"]
    recorded = set(layers["experiment"]) if not layers.empty else set()
    out = {}
    for group in doc["groups"]:
        runs = ok[(ok["group"] == group) & ~ok["experiment"].isin(recorded)]
        if runs.empty:
            continue
        steps, every = (
            pd.to_numeric(runs[c], errors="coerce") if c in runs else pd.Series(dtype=float)
            for c in ("optimizer_steps", "diagnostics_every")
        )
        info = {
            "labels": list(dict.fromkeys(runs["label"])),
            "whole_group": set(runs["experiment"])
            >= set(ok.loc[ok["group"] == group, "experiment"]),
            "max_steps": int(steps.max()) if steps.notna().any() else None,
            "every": int(every.min()) if every.notna().any() else None,
        }
        if info["every"] == 0:
            info["why"] = "off"
        elif None not in (info["max_steps"], info["every"]) and info["max_steps"] < info["every"]:
            info["why"] = "too_few_steps"
        else:
            info["why"] = "not_recorded"
        out[group] = info
    return out


def varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].astype(str).nunique() > 1


def plan_figures(
    doc: dict[str, Any],
    summary: pd.DataFrame,
    histories: pd.DataFrame,
    layers: pd.DataFrame,
    best: dict[str, Any] | None,
    fig_dir: Path,
    levels: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Draw every figure this study's data supports; returns [{key, path, title, group}]."""
    task, metric = doc["task"], doc["metric"]
    secondary = "test_mse" if task == "regression" else "test_loss"
    if secondary == metric:
        secondary = metric_columns(task)[0]
    curve_columns = (
        ["train_loss", "val_loss", "val_r2"]
        if task == "regression"
        else ["train_loss", "val_loss", "val_accuracy", "val_top5"]
    )
    groups = {g: spec["experiments"] for g, spec in doc["groups"].items()}
    out: list[dict[str, Any]] = []

    def add(key, path, title, group=None):
        out.append({"key": key, "path": path, "title": title, "group": group})

    add(
        "overview",
        figures.overview(summary, groups, metric, fig_dir / "overview.png", levels=levels),
        f"Overview: {metric} per experiment, mean and 95% t-interval over seeds (as in the tables)",
    )
    ok = summary[summary["status"] == "ok"]
    for group, spec in doc["groups"].items():
        runs = summary[summary["group"] == group]
        good = ok[ok["group"] == group]
        if good.empty:
            continue
        factors = [f for f in spec["factors"] if varies(good, f)]
        special = False
        if "grad_accum_steps" in factors and "batch_size" in good:
            special = True
            add(
                f"accumulation_{group}",
                figures.accumulation_bars(runs, metric, fig_dir / f"accumulation_{group}.png"),
                f"{group}: true vs accumulated batches",
                group,
            )
        if {"num_workers", "cleanup_every"} <= set(factors):
            special = True
            add(
                f"workers_cleanup_{group}",
                figures.workers_cleanup(runs, metric, fig_dir / f"workers_cleanup_{group}.png"),
                f"{group}: DataLoader workers × cleanup interval",
                group,
            )
        special |= {"batch_size", "lr"} <= set(factors)  # drawn once: lr_vs_metric below
        special |= "scheduler" in factors  # scheduler_comparison shows the metric
        # a generic metric-vs-factor plot where no special plot shows this group's factor
        for factor in [] if special else factors:
            add(
                f"factor_{group}_{factor}",
                figures.factor_effect(
                    runs,
                    factor,
                    metric,
                    secondary if secondary in runs else None,
                    fig_dir / f"factor_{group}_{factor}.png",
                    f"{group}: {metric} vs {factor}",
                ),
                f"{group}: {metric} against {factor}",
                group,
            )
        hist = histories[histories["group"] == group] if not histories.empty else histories
        if "scheduler" in factors:
            add(
                f"scheduler_{group}",
                figures.scheduler_comparison(
                    runs, hist, metric, fig_dir / f"scheduler_{group}.png"
                ),
                f"{group}: scheduler comparison and LR per epoch",
                group,
            )
        if not hist.empty:
            add(
                f"curves_{group}",
                figures.learning_curves(
                    histories, group, curve_columns, fig_dir / f"curves_{group}.png"
                ),
                f"{group}: learning curves",
                group,
            )
            if any(c in hist and hist[c].notna().any() for c in DIAGNOSTIC_COLUMNS):
                add(
                    f"gradients_{group}",
                    figures.learning_curves(
                        histories,
                        group,
                        DIAGNOSTIC_COLUMNS,
                        fig_dir / f"gradients_{group}.png",
                        figures.GRADIENTS_TITLE,
                    ),
                    f"{group}: gradient statistics per epoch",
                    group,
                )
        if not layers.empty and (layers["group"] == group).any():
            add(
                f"gradflow_{group}",
                figures.gradient_flow_group(layers, group, fig_dir / f"gradflow_{group}.png"),
                f"{group}: gradient flow and weight updates per layer",
                group,
            )
    lr_groups = [g for g, spec in doc["groups"].items() if "lr" in spec["factors"]]
    lr_runs = ok[ok["group"].isin(lr_groups)]
    if varies(lr_runs, "lr") and "batch_size" in lr_runs:
        add(
            "lr_vs_metric",
            figures.lr_vs_metric(lr_runs, metric, fig_dir / "lr_vs_metric.png"),
            f"Learning rate vs {metric}, coloured by batch size (groups varying lr)",
        )
    if not histories.empty and "lr" in histories:
        add(
            "lr_schedules",
            figures.lr_schedules(histories, fig_dir / "lr_schedules.png"),
            "Learning-rate schedules (per epoch)",
        )
    if {"best_epoch", "epochs_run"} <= set(ok) and not ok.empty:
        add(
            "early_stopping",
            figures.early_stopping(
                summary, [e for g in groups.values() for e in g], fig_dir / "early_stopping.png"
            ),
            "Early stopping: best epoch per run and epochs run",
        )
    if {"time_per_epoch_s", "peak_memory_mb", "throughput_samples_per_s"} <= set(
        ok
    ) and not ok.empty:
        add(
            "cost",
            figures.cost(summary, metric, fig_dir / "cost.png"),
            "Cost vs quality per experiment",
        )
    if best is not None and not layers.empty:
        run = layers[layers["experiment"] == best["experiment"]]
        if not run.empty:
            seed = run["seed"].min()
            add(
                "gradflow_best",
                figures.gradient_flow_run(
                    run[run["seed"] == seed],
                    f"{best['experiment']} seed {seed}: gradient flow and weight updates",
                    fig_dir / "gradflow_best.png",
                ),
                f"Recommended configuration ({best['experiment']}, seed {seed}): gradient "
                "flow and weight updates per layer and step",
            )
    return out


WHOLE_STUDY = "whole study"  # the `group` of the figures of the "Whole study" section


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


def _column_values(summary: pd.DataFrame, column: str) -> list[str]:
    if column not in summary:
        return []
    return sorted({str(v) for v in summary[column].dropna() if str(v) not in ("", "nan")})


def provenance(summary: pd.DataFrame, benchmarks: pd.DataFrame, repo: str | Path) -> dict[str, Any]:
    runs = summary[["experiment", "seed"]].copy()
    for column in ("job_id", "hostname", "wall_time_s", "queue_time_s", "device_name"):
        runs[column] = summary[column] if column in summary else None
    if not benchmarks.empty:
        runs = runs.merge(benchmarks, on=["experiment", "seed"], how="left")
    return {
        "commit": git_commit(repo),
        "packages": package_versions(),
        "devices": _column_values(summary, "device_name"),
        "torch_in_runs": _column_values(summary, "torch_version"),
        "images": _column_values(summary, "container_image"),
        "hosts": _column_values(summary, "hostname"),
        "job_ids": _column_values(summary, "job_id"),
        "prepared_in_runs": _column_values(summary, "prepared_sha256"),
        "runs": runs.to_dict(orient="records"),
        "total_wall_s": float(pd.to_numeric(summary.get("wall_time_s"), errors="coerce").sum())
        if "wall_time_s" in summary
        else math.nan,
    }


def render(
    study_json: str | Path,
    summary_csv: str | Path,
    group_csvs: dict[str, str | Path],
    out_md: str | Path,
    out_html: str | Path,
    fig_dir: str | Path,
    repo: str | Path = ".",
    stats_json: str | Path | None = None,
    curves: str | Path | None = None,
    layers: str | Path | None = None,
    experiments: str | Path | None = None,
    verdicts_csv: str | Path | None = None,
    recommended_yaml: str | Path | None = None,
    timeline_csv: str | Path | None = None,
    compute_csv: str | Path | None = None,
) -> dict[str, Any]:
    """The report reads the aggregate outputs only; it computes no statistics (stats.json,
    verdicts.csv, recommended.yaml, timeline.csv and compute.csv default to the files
    beside study.json)."""
    import jinja2
    import markdown
    import yaml

    doc = read_json(study_json)
    summary = read_csv(summary_csv)
    tables = {g: read_csv(p) for g, p in group_csvs.items()}
    here = Path(study_json).parent
    stats = read_json(stats_json or here / "stats.json")
    verdicts = read_csv(
        verdicts_csv or here / "verdicts.csv", keep_default_na=False, na_values=[""]
    )
    verdicts = verdicts.astype(object).where(verdicts.notna(), None)
    recommended = yaml.safe_load(Path(recommended_yaml or here / "recommended.yaml").read_text())
    task, metric = doc["task"], doc["metric"]
    out_md, fig_dir = Path(out_md), Path(fig_dir)
    histories, layers = read_table(curves), read_table(layers)
    benchmarks = job_costs(summary)
    design = read_table(experiments, sep="\t")
    doc.setdefault("experiments", design.to_dict(orient="records"))
    best = recommended.get("recommended")
    figs = plan_figures(doc, summary, histories, layers, best, fig_dir, stats.get("levels"))
    timeline = read_table(
        timeline_csv or here / "timeline.csv", dtype={"host": str, "gpu": str, "job_id": str}
    )
    compute = read_table(compute_csv or here / "compute.csv")
    study_view = whole_study(doc, summary, stats, timeline, compute, fig_dir)
    figs += study_view["figures"]
    for fig in figs:
        fig["rel"] = str(Path(fig["path"]).relative_to(out_md.parent))
    columns = [c for t in tables.values() for c in t.columns]
    metrics = [m for m in metric_columns(task) if f"{m}_mean" in columns]
    runs_ok = summary[summary["status"] == "ok"]
    experiments = [e for spec in doc["groups"].values() for e in spec["experiments"]]
    context = {
        "study": doc,
        "task": task,
        "metric": metric,
        "metrics": metrics,
        "higher_is_better": metric not in LOWER_IS_BETTER,
        "efficiency_metric": metric_columns(task)[0],
        "tables": {g: t.to_dict(orient="records") for g, t in tables.items()},
        "stats": stats,
        "rule": stats["rule"],
        "worked_example": stats.get("worked_example", ""),
        "recommended": recommended,
        "verdicts": verdicts.to_dict(orient="records"),
        "levels": {
            g: {lv["experiment"]: lv for lv in res["levels"]} for g, res in stats["groups"].items()
        },
        "experiments": {e["experiment"]: e for e in doc["experiments"]},
        "figures": {f["key"]: f for f in figs},
        "group_figures": {g: [f for f in figs if f["group"] == g] for g in doc["groups"]},
        "study_figures": [f for f in figs if f["group"] is None and f["key"] != "overview"],
        "whole_study": study_view,
        "fmt": fmt,
        "fmt_p": fmt_p,
        "p_is": p_is,
        "fmt_signed": fmt_signed,
        "ci_name": ci_name,
        "verdict_words": verdict_words,
        # a sequential study's verdicts carry the interval of the look that decided them
        "verdict_ci": "CI (at its look's level)" if doc.get("sequential") else "95% CI",
        "cost_metrics": COST_METRICS,
        "n_runs": len(summary),
        "n_ok": len(runs_ok),
        "not_ok": summary[summary["status"] != "ok"].to_dict(orient="records"),
        "diagnostics": experiment_diagnostics(summary, histories, benchmarks, metric, experiments),
        "provenance": provenance(summary, benchmarks, repo),
        "cost": {c: runs_ok[c].mean() for c in COST_METRICS if c in runs_ok},
        "target": target(doc["dataset"]["name"], metrics or [metric]),
        "ignored": ignored_on_device(summary),
        "no_gradient_flow": missing_gradient_flow(doc, summary, layers),
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.templates()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    text = env.get_template("report.md.j2").render(**context)
    write_text(out_md, text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    body = embed_images(body, out_md.parent)  # one self-contained file, to be mailed
    html = env.get_template("report.html.j2").render(
        title=f"hpstudy report: {doc['name']}", body=body
    )
    write_text(out_html, html)
    return context
