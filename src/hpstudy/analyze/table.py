"""A table of runs from anywhere, checked and put in summary.csv's form: every problem is
an error naming the column, the value and the fix (an unknown experiment, a missing metric
column, an experiment x seed given twice, a status that is unknown or not finished, a metric
that is not a number, a seed that is not a whole number)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# a run's status as exports spell it -> the workflow's
STATUSES = {
    "finished": "ok",
    "ok": "ok",
    "diverged": "diverged",
    "failed": "failed",
    "crashed": "failed",  # W&B
    "killed": "failed",  # W&B, MLflow
}
NOT_DONE = {"running", "scheduled", "queued", "pending"}
# per-run columns the analysis reads besides the metric (adequacy warnings)
EXTRA = ("optimizer_steps", "best_epoch", "epochs_run")


class RunsError(ValueError):
    """A table of runs cannot answer the study; the message names the column, the value and
    the fix."""


def prepare_runs(runs: pd.DataFrame, study, metric: str, source: str = "runs") -> pd.DataFrame:
    """The table checked and put in summary.csv's form: experiment, group, label, seed,
    status (ok / diverged / failed), the metric and EXTRA where given. A run given for one
    experiment also counts for the experiments that resolve to the same configuration
    (a baseline shared by several groups), where those have no runs of their own."""
    if not isinstance(runs, pd.DataFrame):
        raise RunsError(f"{source}: expected a table (pandas DataFrame), got {type(runs).__name__}")
    missing = [c for c in ("experiment", "seed", metric) if c not in runs]
    if missing:
        hint = (
            f"; {metric!r} is the study's primary metric (docs/report.md: renaming an export's "
            "columns)"
            if metric in missing
            else ""
        )
        raise RunsError(
            f"{source}: no column {missing[0]!r}{hint}; the table has {list(runs.columns)}"
        )
    frame = runs.copy()
    frame["experiment"] = frame["experiment"].astype(str)
    by_id = {e.id: e for e in study.experiments}
    unknown = sorted(set(frame["experiment"]) - set(by_id))
    if unknown:
        raise RunsError(
            f"{source}: experiment {unknown[0]!r} is not in study {study.name!r}"
            + (f" (nor {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; its experiments are {list(by_id)[:12]}"
            + (" ..." if len(by_id) > 12 else "")
        )
    seeds = pd.to_numeric(frame["seed"], errors="coerce")
    bad = frame.loc[seeds.isna() | (seeds != seeds.round()), "seed"]
    if len(bad):
        raise RunsError(f"{source}: seed {str(bad.iloc[0])!r} is not a whole number")
    frame["seed"] = seeds.astype(int)
    twice = frame[frame.duplicated(["experiment", "seed"], keep=False)]
    if len(twice):
        first = twice.iloc[0]
        same = (twice["experiment"] == first["experiment"]) & (twice["seed"] == first["seed"])
        raise RunsError(
            f"{source}: experiment {first['experiment']!r} seed {first['seed']} appears "
            f"{int(same.sum())} times; keep one run per experiment and seed"
        )
    frame["status"] = _statuses(frame, source)
    values = pd.to_numeric(frame[metric], errors="coerce")
    given = frame[metric].notna() & (frame[metric].astype(str).str.strip() != "")
    broken = frame[(frame["status"] == "ok") & values.isna() & given]
    if len(broken):
        row = broken.iloc[0]
        raise RunsError(
            f"{source}: {metric} of experiment {row['experiment']!r} seed {row['seed']} is "
            f"{row[metric]!r}, not a number, although the run finished; give its value or "
            "status: failed"
        )
    frame[metric] = values
    frame = _fill_shared(frame, study)
    frame["group"] = frame["experiment"].map(lambda e: by_id[e].group)
    frame["label"] = frame["experiment"].map(lambda e: by_id[e].label)
    keep = ["experiment", "group", "label", "seed", "status", metric]
    keep += [c for c in EXTRA if c in frame and c not in keep]
    order = {e: i for i, e in enumerate(by_id)}
    frame = frame[keep].sort_values(
        ["experiment", "seed"], key=lambda c: c.map(order) if c.name == "experiment" else c
    )
    return frame.reset_index(drop=True)


def _statuses(frame: pd.DataFrame, source: str) -> pd.Series:
    if "status" not in frame:
        return pd.Series("ok", index=frame.index)
    raw = frame["status"].where(frame["status"].notna(), "finished").astype(str).str.lower()
    raw = raw.str.strip().replace({"": "finished", "nan": "finished"})
    not_done = raw[raw.isin(NOT_DONE)]
    if len(not_done):
        raise RunsError(
            f"{source}: a run has status {not_done.iloc[0]!r}; analyse finished runs only "
            "(drop it or wait for it)"
        )
    unknown = sorted(set(raw) - set(STATUSES))
    if unknown:
        raise RunsError(
            f"{source}: status {unknown[0]!r} is not one of {sorted(STATUSES)} (missing = finished)"
        )
    return raw.map(STATUSES)


def _fill_shared(frame: pd.DataFrame, study) -> pd.DataFrame:
    present = set(frame["experiment"])
    extra = []
    for exps in study.configs().values():
        given = [e.id for e in exps if e.id in present]
        for e in exps:
            if e.id not in present and given:
                extra.append(frame[frame["experiment"] == given[0]].assign(experiment=e.id))
    return pd.concat([frame, *extra], ignore_index=True) if extra else frame


def read_runs(path: str | Path) -> pd.DataFrame:
    """A table of runs from a CSV file (or TSV, by its suffix)."""
    path = Path(path)
    if not path.is_file():
        raise RunsError(f"{path}: file not found")
    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    try:
        return pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunsError(f"{path}: not a readable table: {err}") from None
