"""Render the study report: Jinja2 markdown + an HTML rendering of the same text.

Inputs are the aggregation outputs only: summary.csv, study.json, groups/*.csv, stats.json,
curves.csv.gz (per-epoch history of every run), layers.csv.gz (per-layer diagnostics), and
experiments.tsv. Nothing here reads a run folder or a benchmark file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy import paths
from hpstudy.aggregate import COST_METRICS
from hpstudy.analysis import ci_name
from hpstudy.analysis.wording import verdict_words
from hpstudy.atomic import write_text
from hpstudy.config import ignored_settings
from hpstudy.datasets import DATASET_TARGETS
from hpstudy.embed import embed_images
from hpstudy.figure_plan import DIAGNOSTIC_COLUMNS, plan_figures, whole_study
from hpstudy.formatting import fmt, fmt_p, fmt_signed, p_is
from hpstudy.integrity import read_csv, read_json
from hpstudy.metrics import LOWER_IS_BETTER, metric_columns, metric_units
from hpstudy.provenance import git_commit, package_versions


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


@dataclass
class Inputs:
    """What the report reads: the aggregate outputs of one study, nothing else."""

    doc: dict[str, Any]  # study.json, with experiments.tsv's rows as `experiments`
    summary: pd.DataFrame  # summary.csv: one row per experiment x seed
    tables: dict[str, pd.DataFrame]  # groups/*.csv
    stats: dict[str, Any]  # stats.json
    verdicts: pd.DataFrame  # verdicts.csv
    recommended: dict[str, Any]  # recommended.yaml
    histories: pd.DataFrame  # curves.csv.gz: per-epoch history of every run
    layers: pd.DataFrame  # layers.csv.gz: per-layer diagnostics
    timeline: pd.DataFrame  # timeline.csv: every attempt of every run
    compute: pd.DataFrame  # compute.csv: compute spent per study and group


def read_inputs(
    study_json: str | Path,
    summary_csv: str | Path,
    group_csvs: dict[str, str | Path],
    stats_json: str | Path | None = None,
    curves: str | Path | None = None,
    layers: str | Path | None = None,
    experiments: str | Path | None = None,
    verdicts_csv: str | Path | None = None,
    recommended_yaml: str | Path | None = None,
    timeline_csv: str | Path | None = None,
    compute_csv: str | Path | None = None,
) -> Inputs:
    """stats.json, verdicts.csv, recommended.yaml, timeline.csv and compute.csv default to
    the files beside study.json."""
    import yaml

    doc = read_json(study_json)
    here = Path(study_json).parent
    verdicts = read_csv(
        verdicts_csv or here / "verdicts.csv", keep_default_na=False, na_values=[""]
    )
    design = read_table(experiments, sep="\t")
    doc.setdefault("experiments", design.to_dict(orient="records"))
    return Inputs(
        doc=doc,
        summary=read_csv(summary_csv),
        tables={g: read_csv(p) for g, p in group_csvs.items()},
        stats=read_json(stats_json or here / "stats.json"),
        verdicts=verdicts.astype(object).where(verdicts.notna(), None),
        recommended=yaml.safe_load(Path(recommended_yaml or here / "recommended.yaml").read_text()),
        histories=read_table(curves),
        layers=read_table(layers),
        timeline=read_table(
            timeline_csv or here / "timeline.csv",
            dtype={"host": str, "gpu": str, "job_id": str},
        ),
        compute=read_table(compute_csv or here / "compute.csv"),
    )


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
    beside study.json). Returns the template's context."""
    inputs = read_inputs(
        study_json,
        summary_csv,
        group_csvs,
        stats_json,
        curves,
        layers,
        experiments,
        verdicts_csv,
        recommended_yaml,
        timeline_csv,
        compute_csv,
    )
    context = report_context(inputs, Path(out_md), Path(fig_dir), repo)
    write_report(context, Path(out_md), Path(out_html))
    return context


def report_context(
    inputs: Inputs, out_md: Path, fig_dir: Path, repo: str | Path = "."
) -> dict[str, Any]:
    """Draw the figures and gather what report.md.j2 shows."""
    doc, summary, tables, stats = inputs.doc, inputs.summary, inputs.tables, inputs.stats
    verdicts, recommended = inputs.verdicts, inputs.recommended
    histories, layers = inputs.histories, inputs.layers
    task, metric = doc["task"], doc["metric"]
    benchmarks = job_costs(summary)
    best = recommended.get("recommended")
    figs = plan_figures(doc, summary, histories, layers, best, fig_dir, stats.get("levels"))
    study_view = whole_study(doc, summary, stats, inputs.timeline, inputs.compute, fig_dir)
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
        # experiments that share a configuration share its seeds' runs: the rows of summary.csv
        # count (experiment, seed), the trainings count (configuration, seed)
        "n_trained": len(summary.drop_duplicates(["config_hash", "seed"]))
        if "config_hash" in summary
        else len(summary),
        "n_ok": len(runs_ok),
        "not_ok": summary[summary["status"] != "ok"].to_dict(orient="records"),
        "diagnostics": experiment_diagnostics(summary, histories, benchmarks, metric, experiments),
        "provenance": provenance(summary, benchmarks, repo),
        "cost": {c: runs_ok[c].mean() for c in COST_METRICS if c in runs_ok},
        "target": target(doc["dataset"]["name"], metrics or [metric]),
        "ignored": ignored_on_device(summary),
        "no_gradient_flow": missing_gradient_flow(doc, summary, layers),
    }
    return context


def write_report(context: dict[str, Any], out_md: Path, out_html: Path) -> None:
    """report.md from its template, and report.html: the same text with every figure
    embedded, one self-contained file to be mailed."""
    import markdown

    text = paths.template("report.md.j2").render(**context)
    write_text(out_md, text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    body = embed_images(body, out_md.parent)
    html = paths.template("report.html.j2").render(
        title=f"hpstudy report: {context['study']['name']}", body=body
    )
    write_text(out_html, html)
