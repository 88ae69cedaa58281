"""Per-study aggregation: summary.csv (one row per run), study.json, per-group tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy.stats import LOWER_IS_BETTER, mean_ci, study_statistics
from hpstudy.study import Study

REGRESSION_METRICS = ["test_r2", "test_mse", "test_rmse", "test_mae"]
CLASSIFICATION_METRICS = ["test_accuracy", "test_top5", "test_loss"]
COST_METRICS = ["epochs_run", "best_epoch", "train_time_s", "time_per_epoch_s",
                "throughput_samples_per_s", "peak_memory_mb", "memory_efficiency"]
__all__ = ["LOWER_IS_BETTER", "mean_ci"]  # re-exported for report.py and older callers


def primary_metric(study: Study, task: str) -> str:
    if study.metric:
        return f"test_{study.metric}" if not study.metric.startswith("test_") else study.metric
    return "test_r2" if task == "regression" else "test_accuracy"


def metric_columns(task: str) -> list[str]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def group_table(runs: pd.DataFrame, metrics: list[str],
                factors: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per experiment: its factor values (`factors[experiment]`), n runs, n ok, and
    mean/SD/95% CI over seeds per metric."""
    rows = []
    for exp, frame in runs.groupby("experiment", sort=False):
        ok = frame[frame["status"] == "ok"]
        row: dict[str, Any] = {"experiment": exp, "label": frame["label"].iloc[0],
                               **(factors or {}).get(exp, {}),
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
                   missing: list[str], reasons: dict[str, str] | None = None,
                   ) -> dict[str, Any]:
    return {
        "name": study.name,
        "description": study.description,
        "seeds": study.seeds,
        "dataset": study.dataset,
        "base": study.base,
        "metric": primary_metric(study, manifest["task"]),
        "task": manifest["task"],
        "references": study.references,
        "deviations": study.deviations,
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
        "missing_reasons": reasons or {},  # run -> why it failed, where a note says
        "runs": json.loads(summary.to_json(orient="records")),
    }


class MissingRunsError(RuntimeError):
    """Some runs of the study have no results; aggregation refuses unless partial is allowed."""


def failure_reasons(study_dir: str | Path, runs: list[str]) -> dict[str, str]:
    """Why missing runs failed, from the notes training leaves beside the checkpoints
    (`checkpoints/{exp}/seed{N}.failed.json`, see train.failure_note_path)."""
    reasons = {}
    for run in runs:
        note = Path(study_dir) / "checkpoints" / f"{run}.failed.json"
        try:
            reasons[run] = json.loads(note.read_text())["reason"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no note: never started, killed, or still running
    return reasons


def aggregate_study(study_file: str | Path, prepared: str | Path, records: list[str | Path],
                    out_summary: str | Path, out_study: str | Path, out_groups: str | Path,
                    all_runs: list[str] | None = None, allow_partial: bool = False,
                    out_stats: str | Path | None = None) -> pd.DataFrame:
    """Write summary.csv (one row per run, in study order), study.json, groups/*.csv and
    (given out_stats) stats.json with the tests and verdicts of every group."""
    from hpstudy.atomic import write_csv, write_json
    from hpstudy.study import load_study

    study = load_study(study_file)
    manifest = json.loads(Path(prepared).with_name("manifest.json").read_text())
    summary = load_records(records)
    expected = all_runs or [f"{e}/seed{s}" for e, s in study.runs()]
    found = set() if summary.empty else {f"{r.experiment}/seed{r.seed}"
                                         for r in summary.itertuples()}
    missing = [run for run in expected if run not in found]
    reasons = failure_reasons(Path(out_summary).parent, missing)
    if missing and not allow_partial:
        known = "".join(f"\n  {run}: {why}" for run, why in list(reasons.items())[:10])
        raise MissingRunsError(
            f"study {study.name}: {len(missing)} of {len(expected)} runs have no results: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; rerun them, or pass "
            "--config allow_partial=true for a report marked as partial"
            + (f"\nknown failures:{known}" if known else ""))
    if summary.empty:
        raise MissingRunsError(
            f"study {study.name}: no finished runs to aggregate; allow_partial=true reports "
            "only runs that have finished, so run the study first (e.g. with --keep-going)")
    order = {e.id: i for i, e in enumerate(study.experiments)}
    summary = summary.sort_values(["experiment", "seed"], key=lambda c: c.map(order)
                                  if c.name == "experiment" else c, kind="stable")
    write_csv(out_summary, summary)
    metrics = metric_columns(manifest["task"]) + COST_METRICS
    out_groups = Path(out_groups)
    out_groups.mkdir(parents=True, exist_ok=True)
    for name, group in study.groups.items():
        runs = summary[summary["group"] == name]
        factors = {e.id: {f: _plain(getattr(e.config, f, None)) for f in group.factors}
                   for e in group.experiments}
        table = group_table(runs, metrics, factors) if not runs.empty else pd.DataFrame()
        write_csv(out_groups / f"{name}.csv", table)
    document = study_document(study, summary, manifest, missing, reasons)
    write_json(out_study, document)
    if out_stats is not None:
        write_json(out_stats, study_statistics(summary, json.loads(json.dumps(document))))
    return summary


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
