"""Per-study aggregation: summary.csv (one row per run), study.json, per-group tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from hpstudy.study import Study

REGRESSION_METRICS = ["test_r2", "test_mse", "test_rmse", "test_mae"]
CLASSIFICATION_METRICS = ["test_accuracy", "test_top5", "test_loss"]
COST_METRICS = ["epochs_run", "best_epoch", "train_time_s", "time_per_epoch_s",
                "throughput_samples_per_s", "peak_memory_mb"]
LOWER_IS_BETTER = {"test_mse", "test_rmse", "test_mae", "test_loss", "test_count_mae"}


def primary_metric(study: Study, task: str) -> str:
    if study.metric:
        return f"test_{study.metric}" if not study.metric.startswith("test_") else study.metric
    return "test_r2" if task == "regression" else "test_accuracy"


def metric_columns(task: str) -> list[str]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, SD and the t-based confidence interval of the mean (nan where undefined)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return (math.nan,) * 4
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    sd = float(values.std(ddof=1))
    half = float(st.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
    return mean, sd, mean - half, mean + half


def group_table(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per experiment: n runs, n ok, and mean/SD/95% CI over seeds per metric."""
    rows = []
    for exp, frame in runs.groupby("experiment", sort=False):
        ok = frame[frame["status"] == "ok"]
        row: dict[str, Any] = {"experiment": exp, "label": frame["label"].iloc[0],
                               "n_runs": len(frame), "n_ok": len(ok),
                               "n_diverged": int((frame["status"] == "diverged").sum())}
        for metric in metrics:
            if metric not in ok:
                continue
            mean, sd, lo, hi = mean_ci(ok[metric].to_numpy(dtype=float))
            row.update({f"{metric}_mean": mean, f"{metric}_sd": sd,
                        f"{metric}_ci_low": lo, f"{metric}_ci_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def load_records(paths: list[str | Path]) -> pd.DataFrame:
    records = []
    for path in paths:
        with open(path) as fh:
            records.append(json.load(fh))
    return pd.DataFrame(records)


def study_document(study: Study, summary: pd.DataFrame, manifest: dict[str, Any],
                   missing: list[str]) -> dict[str, Any]:
    return {
        "name": study.name,
        "description": study.description,
        "seeds": study.seeds,
        "dataset": study.dataset,
        "base": study.base,
        "metric": primary_metric(study, manifest["task"]),
        "task": manifest["task"],
        "references": study.references,
        "groups": {
            g.name: {"question": g.question, "hypothesis": g.hypothesis, "factors": g.factors,
                     "baseline": f"{g.name}-{g.baseline}" if g.baseline else None,
                     "experiments": [e.id for e in g.experiments]}
            for g in study.groups.values()
        },
        "experiments": study.table().to_dict(orient="records"),
        "prepared": {k: manifest[k] for k in ("content_sha256", "source_sha256", "n_samples",
                                                "split_sizes", "image_shape", "source",
                                                "data_quality", "task", "num_classes")},
        "partial": bool(missing),
        "missing_runs": missing,
        "runs": json.loads(summary.to_json(orient="records")),
    }


class MissingRunsError(RuntimeError):
    """Some runs of the study have no results; aggregation refuses unless partial is allowed."""


def aggregate_study(study_file: str | Path, prepared: str | Path, records: list[str | Path],
                    out_summary: str | Path, out_study: str | Path, out_groups: str | Path,
                    all_runs: list[str] | None = None, allow_partial: bool = False,
                    ) -> pd.DataFrame:
    """Write summary.csv (one row per run, in study order), study.json and groups/*.csv."""
    from hpstudy.atomic import write_csv, write_json
    from hpstudy.study import load_study

    study = load_study(study_file)
    manifest = json.loads(Path(prepared).with_name("manifest.json").read_text())
    summary = load_records(records)
    expected = all_runs or [f"{e}/seed{s}" for e, s in study.runs()]
    found = set() if summary.empty else {f"{r.experiment}/seed{r.seed}"
                                         for r in summary.itertuples()}
    missing = [run for run in expected if run not in found]
    if missing and not allow_partial:
        raise MissingRunsError(
            f"study {study.name}: {len(missing)} of {len(expected)} runs have no results: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; rerun them, or pass "
            "--config allow_partial=true for a report marked as partial")
    if summary.empty:
        raise MissingRunsError(f"study {study.name}: no finished runs to aggregate")
    order = {e.id: i for i, e in enumerate(study.experiments)}
    summary = summary.sort_values(["experiment", "seed"], key=lambda c: c.map(order)
                                  if c.name == "experiment" else c, kind="stable")
    write_csv(out_summary, summary)
    metrics = metric_columns(manifest["task"]) + COST_METRICS
    out_groups = Path(out_groups)
    out_groups.mkdir(parents=True, exist_ok=True)
    for name, group in study.groups.items():
        runs = summary[summary["group"] == name]
        table = group_table(runs, metrics) if not runs.empty else pd.DataFrame()
        write_csv(out_groups / f"{name}.csv", table)
    write_json(out_study, study_document(study, summary, manifest, missing))
    return summary
