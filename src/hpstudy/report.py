"""Render the study report: Jinja2 markdown + an HTML rendering of the same text.

Inputs are the aggregation outputs (summary.csv, study.json, groups/*.csv, stats.json) and,
per run, history.csv and layers.csv.gz (found through summary.csv's run_dir) and the
Snakemake benchmark TSV of the training job (wall time, peak RSS), where they exist.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy import figures
from hpstudy.aggregate import COST_METRICS, LOWER_IS_BETTER, metric_columns
from hpstudy.atomic import write_text
from hpstudy.embed import embed_images
from hpstudy.provenance import git_commit, package_versions
from hpstudy.stats import VERDICT_RULE, compare, study_statistics

TEMPLATES = Path(__file__).resolve().parents[2] / "workflow" / "templates"
DIAGNOSTIC_COLUMNS = ["grad_norm_mean", "grad_norm_cv", "grad_noise_scale", "grad_variance"]


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: 4 significant digits, blanks for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
    return str(value)


def fmt_p(value: Any) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_is(value: Any) -> str:
    """'p = 0.019' or 'p < 0.001' for running text."""
    text = fmt_p(value)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_signed(value: Any) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return ("+" if value > 0 else "") + fmt(float(value))


def _runs_with(summary: pd.DataFrame, name: str, read) -> pd.DataFrame:
    frames = []
    for run in summary.itertuples():
        path = Path(str(run.run_dir)) / name
        if path.is_file() and path.stat().st_size > 0:
            try:
                frame = read(path)
            except pd.errors.EmptyDataError:  # e.g. a run that diverged in its first epoch
                continue
            frame["experiment"], frame["group"], frame["label"], frame["seed"] = (
                run.experiment, run.group, run.label, run.seed)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_histories(summary: pd.DataFrame) -> pd.DataFrame:
    return _runs_with(summary, "history.csv", pd.read_csv)


def _read_layers(path: Path) -> pd.DataFrame:
    # older runs wrote layers.csv.gz uncompressed: look at the gzip magic bytes
    with open(path, "rb") as fh:
        compressed = fh.read(2) == b"\x1f\x8b"
    if compressed:
        with gzip.open(path, "rt") as fh:
            return pd.read_csv(fh)
    return pd.read_csv(path, compression=None)


def load_layers(summary: pd.DataFrame) -> pd.DataFrame:
    return _runs_with(summary, "layers.csv.gz", _read_layers)


def load_benchmarks(summary: pd.DataFrame, bench_dir: str | Path | None) -> pd.DataFrame:
    """Snakemake benchmark of each training job: wall seconds and peak RSS (MiB)."""
    rows = []
    for run in summary.itertuples():
        path = Path(bench_dir or "") / str(run.experiment) / f"seed{run.seed}.tsv"
        if bench_dir and path.is_file():
            bench = pd.read_csv(path, sep="\t")
            if not bench.empty:
                rows.append({"experiment": run.experiment, "seed": run.seed,
                             "job_wall_s": float(bench["s"].iloc[-1]),
                             "job_max_rss_mb": float(bench["max_rss"].iloc[-1])
                             if "max_rss" in bench else math.nan})
    return pd.DataFrame(rows)


def best_configuration(tables: dict[str, pd.DataFrame], metric: str) -> dict[str, Any] | None:
    rows = [row for t in tables.values() for row in t.to_dict(orient="records")
            if row.get("n_ok", 0) > 0 and f"{metric}_mean" in row
            and math.isfinite(row[f"{metric}_mean"])]
    if not rows:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(rows, key=lambda r: r[f"{metric}_mean"])


def runner_up(best: dict[str, Any], summary: pd.DataFrame, stats: dict[str, Any],
              metric: str) -> dict[str, Any] | None:
    """The best distinct configuration after the recommended one, and a Welch test of the
    two: is the recommendation distinguishable from its closest competitor?"""
    levels = [lv for g in stats["groups"].values() for lv in g["levels"]
              if math.isfinite(lv["mean"])]
    same = {best["experiment"], *stats["performers"]["aliases"].get(best["experiment"], [])}
    for group in stats["identical_configs"]:
        if best["experiment"] in group:
            same |= set(group)
    sign = -1 if metric in LOWER_IS_BETTER else 1
    others = sorted((lv for lv in levels if lv["experiment"] not in same),
                    key=lambda lv: sign * lv["mean"], reverse=True)
    if not others:
        return None
    other = others[0]
    ok = summary[summary["status"] == "ok"]
    test = compare(ok.loc[ok["experiment"] == other["experiment"], metric],
                   ok.loc[ok["experiment"] == best["experiment"], metric], sign)
    return {"experiment": other["experiment"], "mean": other["mean"], "sd": other["sd"],
            **{k: test[k] for k in ("welch_p", "hedges_g", "note")}}


def experiment_diagnostics(summary: pd.DataFrame, histories: pd.DataFrame,
                           benchmarks: pd.DataFrame, metric: str,
                           experiments: list[str]) -> list[dict[str, Any]]:
    """Per experiment, means over finished seeds: gradient statistics (last epoch),
    FLOPs, parameters, size, memory, speed and memory efficiency."""
    ok = summary[summary["status"] == "ok"]
    rows = []
    for exp in experiments:
        runs = ok[ok["experiment"] == exp]
        if runs.empty:
            continue
        row: dict[str, Any] = {"experiment": exp, "n": len(runs)}
        for column in ("parameters", "model_size_mb", "flops_forward_per_sample",
                       "flops_train_per_sample", "peak_memory_mb", "throughput_samples_per_s",
                       "time_per_epoch_s", "data_wait_fraction", "memory_efficiency",
                       metric):
            row[column] = float(runs[column].mean()) if column in runs else math.nan
        if math.isfinite(row["parameters"]):
            row["parameters"] = int(round(row["parameters"]))
        if not histories.empty:
            hist = histories[histories["experiment"] == exp]
            last = hist.sort_values("epoch").groupby("seed").tail(1)
            for column in DIAGNOSTIC_COLUMNS:
                row[column] = float(last[column].mean()) if column in last else math.nan
        if not benchmarks.empty:
            bench = benchmarks[benchmarks["experiment"] == exp]
            row["job_wall_s"] = float(bench["job_wall_s"].mean()) if len(bench) else math.nan
        rows.append(row)
    return rows


def varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].astype(str).nunique() > 1


def plan_figures(doc: dict[str, Any], summary: pd.DataFrame, histories: pd.DataFrame,
                 layers: pd.DataFrame, best: dict[str, Any] | None,
                 fig_dir: Path) -> list[dict[str, Any]]:
    """Draw every figure this study's data supports; returns [{key, path, title, group}]."""
    task, metric = doc["task"], doc["metric"]
    secondary = "test_mse" if task == "regression" else "test_loss"
    if secondary == metric:
        secondary = "test_r2" if task == "regression" else "test_accuracy"
    curve_columns = (["train_loss", "val_loss", "val_r2"] if task == "regression"
                     else ["train_loss", "val_loss", "val_accuracy", "val_top5"])
    groups = {g: spec["experiments"] for g, spec in doc["groups"].items()}
    out: list[dict[str, Any]] = []

    def add(key, path, title, group=None):
        out.append({"key": key, "path": path, "title": title, "group": group})

    add("overview", figures.overview(summary, groups, metric, fig_dir / "overview.png"),
        f"Overview: {metric} per experiment, mean and 95% CI over seeds")
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
            add(f"accumulation_{group}", figures.accumulation_bars(
                runs, metric, fig_dir / f"accumulation_{group}.png"),
                f"{group}: true vs accumulated batches", group)
        if {"num_workers", "cleanup_every"} <= set(factors):
            special = True
            add(f"workers_cleanup_{group}", figures.workers_cleanup(
                runs, metric, fig_dir / f"workers_cleanup_{group}.png"),
                f"{group}: DataLoader workers × cleanup interval", group)
        special |= {"batch_size", "lr"} <= set(factors)  # drawn once: lr_vs_metric below
        special |= "scheduler" in factors  # scheduler_comparison shows the metric
        # a generic metric-vs-factor plot where no special plot shows this group's factor
        for factor in [] if special else factors:
            add(f"factor_{group}_{factor}", figures.factor_effect(
                runs, factor, metric, secondary if secondary in runs else None,
                fig_dir / f"factor_{group}_{factor}.png", f"{group}: {metric} vs {factor}"),
                f"{group}: {metric} against {factor}", group)
        hist = histories[histories["group"] == group] if not histories.empty else histories
        if "scheduler" in factors:
            add(f"scheduler_{group}", figures.scheduler_comparison(
                runs, hist, metric, fig_dir / f"scheduler_{group}.png"),
                f"{group}: scheduler comparison and LR per epoch", group)
        if not hist.empty:
            add(f"curves_{group}", figures.learning_curves(
                histories, group, curve_columns, fig_dir / f"curves_{group}.png"),
                f"{group}: learning curves", group)
            if any(c in hist and hist[c].notna().any() for c in DIAGNOSTIC_COLUMNS):
                add(f"gradients_{group}", figures.learning_curves(
                    histories, group, DIAGNOSTIC_COLUMNS, fig_dir / f"gradients_{group}.png"),
                    f"{group}: gradient statistics per epoch", group)
        if not layers.empty and (layers["group"] == group).any():
            add(f"gradflow_{group}", figures.gradient_flow_group(
                layers, group, fig_dir / f"gradflow_{group}.png"),
                f"{group}: gradient flow and weight updates per layer", group)
    lr_groups = [g for g, spec in doc["groups"].items() if "lr" in spec["factors"]]
    lr_runs = ok[ok["group"].isin(lr_groups)]
    if varies(lr_runs, "lr") and "batch_size" in lr_runs:
        add("lr_vs_metric", figures.lr_vs_metric(lr_runs, metric, fig_dir / "lr_vs_metric.png"),
            f"Learning rate vs {metric}, coloured by batch size (groups varying lr)")
    if not histories.empty and "lr" in histories:
        add("lr_schedules", figures.lr_schedules(histories, fig_dir / "lr_schedules.png"),
            "Learning-rate schedules (per epoch)")
    if {"best_epoch", "epochs_run"} <= set(ok) and not ok.empty:
        add("early_stopping", figures.early_stopping(
            summary, [e for g in groups.values() for e in g], fig_dir / "early_stopping.png"),
            "Early stopping: best epoch per run and epochs run")
    if {"time_per_epoch_s", "peak_memory_mb", "throughput_samples_per_s"} <= set(ok) \
            and not ok.empty:
        add("cost", figures.cost(summary, metric, fig_dir / "cost.png"),
            "Cost vs quality per experiment")
    if best is not None and not layers.empty:
        run = layers[layers["experiment"] == best["experiment"]]
        if not run.empty:
            seed = run["seed"].min()
            add("gradflow_best", figures.gradient_flow_run(
                run[run["seed"] == seed],
                f"{best['experiment']} seed {seed}: gradient flow and weight updates",
                fig_dir / "gradflow_best.png"),
                f"Recommended configuration ({best['experiment']}, seed {seed}): gradient "
                "flow and weight updates per layer and step")
    return out


def _column_values(summary: pd.DataFrame, column: str) -> list[str]:
    if column not in summary:
        return []
    return sorted({str(v) for v in summary[column].dropna() if str(v) not in ("", "nan")})


def provenance(summary: pd.DataFrame, benchmarks: pd.DataFrame, repo: str | Path
               ) -> dict[str, Any]:
    runs = summary[["experiment", "seed"]].copy()
    for column in ("job_id", "hostname", "wall_time_s", "queue_time_s", "device_name"):
        runs[column] = summary[column] if column in summary else None
    if not benchmarks.empty:
        runs = runs.merge(benchmarks, on=["experiment", "seed"], how="left")
    return {
        "commit": git_commit(repo), "packages": package_versions(),
        "devices": _column_values(summary, "device_name"),
        "torch_in_runs": _column_values(summary, "torch_version"),
        "images": _column_values(summary, "container_image"),
        "hosts": _column_values(summary, "hostname"),
        "job_ids": _column_values(summary, "job_id"),
        "prepared_in_runs": _column_values(summary, "prepared_sha256"),
        "runs": runs.to_dict(orient="records"),
        "total_wall_s": float(pd.to_numeric(summary.get("wall_time_s"), errors="coerce").sum())
        if "wall_time_s" in summary else math.nan,
    }


def render(study_json: str | Path, summary_csv: str | Path, group_csvs: dict[str, str | Path],
           out_md: str | Path, out_html: str | Path, fig_dir: str | Path,
           repo: str | Path = ".", stats_json: str | Path | None = None,
           bench_dir: str | Path | None = None) -> dict[str, Any]:
    import jinja2
    import markdown

    doc = json.loads(Path(study_json).read_text())
    summary = pd.read_csv(summary_csv)
    tables = {g: pd.read_csv(p) if Path(p).stat().st_size > 1 else pd.DataFrame()
              for g, p in group_csvs.items()}
    stats = (json.loads(Path(stats_json).read_text()) if stats_json
             else study_statistics(summary, doc))
    task, metric = doc["task"], doc["metric"]
    out_md, fig_dir = Path(out_md), Path(fig_dir)
    histories, layers = load_histories(summary), load_layers(summary)
    benchmarks = load_benchmarks(summary, bench_dir)
    best = best_configuration(tables, metric)
    figs = plan_figures(doc, summary, histories, layers, best, fig_dir)
    for fig in figs:
        fig["rel"] = str(Path(fig["path"]).relative_to(out_md.parent))
    columns = [c for t in tables.values() for c in t.columns]
    metrics = [m for m in metric_columns(task) if f"{m}_mean" in columns]
    runs_ok = summary[summary["status"] == "ok"]
    experiments = [e for spec in doc["groups"].values() for e in spec["experiments"]]
    context = {
        "study": doc, "task": task, "metric": metric, "metrics": metrics,
        "higher_is_better": metric not in LOWER_IS_BETTER,
        "tables": {g: t.to_dict(orient="records") for g, t in tables.items()},
        "stats": stats, "rule": VERDICT_RULE,
        "best": best, "runner_up": runner_up(best, summary, stats, metric) if best else None,
        "experiments": {e["experiment"]: e for e in doc["experiments"]},
        "figures": {f["key"]: f for f in figs},
        "group_figures": {g: [f for f in figs if f["group"] == g] for g in doc["groups"]},
        "study_figures": [f for f in figs if f["group"] is None and f["key"] != "overview"],
        "fmt": fmt, "fmt_p": fmt_p, "p_is": p_is, "fmt_signed": fmt_signed,
        "cost_metrics": COST_METRICS,
        "n_runs": len(summary), "n_ok": len(runs_ok),
        "not_ok": summary[summary["status"] != "ok"].to_dict(orient="records"),
        "diagnostics": experiment_diagnostics(summary, histories, benchmarks, metric,
                                              experiments),
        "provenance": provenance(summary, benchmarks, repo),
        "cost": {c: runs_ok[c].mean() for c in COST_METRICS if c in runs_ok},
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    text = env.get_template("report.md.j2").render(**context)
    write_text(out_md, text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    body = embed_images(body, out_md.parent)  # one self-contained file, to be mailed
    html = env.get_template("report.html.j2").render(title=f"hpstudy report: {doc['name']}",
                                                     body=body)
    write_text(out_html, html)
    return context
