"""Render the study report: Jinja2 markdown + an HTML rendering of the same text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy import figures
from hpstudy.aggregate import COST_METRICS, LOWER_IS_BETTER, metric_columns
from hpstudy.atomic import write_text
from hpstudy.provenance import git_commit, package_versions

TEMPLATES = Path(__file__).resolve().parents[2] / "workflow" / "templates"


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: 4 significant digits, blanks for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
    return str(value)


def load_histories(summary: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for run in summary.itertuples():
        path = Path(run.run_dir) / "history.csv"
        if path.is_file() and path.stat().st_size > 0:
            frame = pd.read_csv(path)
            frame["experiment"], frame["group"], frame["label"], frame["seed"] = (
                run.experiment, run.group, run.label, run.seed)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def best_configuration(tables: dict[str, pd.DataFrame], metric: str) -> dict[str, Any] | None:
    rows = [row for t in tables.values() for row in t.to_dict(orient="records")
            if row.get("n_ok", 0) > 0 and f"{metric}_mean" in row
            and math.isfinite(row[f"{metric}_mean"])]
    if not rows:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(rows, key=lambda r: r[f"{metric}_mean"])


def render(study_json: str | Path, summary_csv: str | Path, group_csvs: dict[str, str | Path],
           out_md: str | Path, out_html: str | Path, fig_dir: str | Path,
           repo: str | Path = ".") -> dict[str, Any]:
    import jinja2
    import markdown

    doc = json.loads(Path(study_json).read_text())
    summary = pd.read_csv(summary_csv)
    tables = {g: pd.read_csv(p) for g, p in group_csvs.items()}
    task, metric = doc["task"], doc["metric"]
    out_md, fig_dir = Path(out_md), Path(fig_dir)
    histories = load_histories(summary)
    groups = {g: spec["experiments"] for g, spec in doc["groups"].items()}
    figs = {"overview": figures.overview(summary, groups, metric, fig_dir / "overview.png")}
    val_metric = "val_r2" if task == "regression" else "val_accuracy"
    if not histories.empty:
        for group in groups:
            figs[f"curves_{group}"] = figures.learning_curves(
                histories, group, val_metric, fig_dir / f"curves_{group}.png")
    rel = {k: str(Path(v).relative_to(out_md.parent)) for k, v in figs.items()}
    metrics = [m for m in metric_columns(task) if f"{m}_mean" in next(iter(tables.values()))]
    runs_ok = summary[summary["status"] == "ok"]
    devices = sorted(set(summary.get("device_name", pd.Series(dtype=str)).dropna().astype(str)))
    context = {
        "study": doc, "task": task, "metric": metric, "metrics": metrics,
        "tables": {g: t.to_dict(orient="records") for g, t in tables.items()},
        "best": best_configuration(tables, metric),
        "experiments": {e["experiment"]: e for e in doc["experiments"]},
        "figures": rel, "fmt": fmt, "cost_metrics": COST_METRICS,
        "n_runs": len(summary), "n_ok": len(runs_ok),
        "not_ok": summary[summary["status"] != "ok"].to_dict(orient="records"),
        "provenance": {"commit": git_commit(repo), "packages": package_versions(),
                       "devices": devices,
                       "torch_in_runs": sorted(set(summary["torch_version"].astype(str)))},
        "cost": {c: runs_ok[c].mean() for c in COST_METRICS if c in runs_ok},
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    text = env.get_template("report.md.j2").render(**context)
    write_text(out_md, text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    html = env.get_template("report.html.j2").render(title=f"hpstudy report: {doc['name']}",
                                                     body=body)
    write_text(out_html, html)
    return context
