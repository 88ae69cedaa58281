"""hpstudy.analyze: a study's questions answered from a table of runs produced anywhere.

The table has one row per run: `experiment` (the ids of summary.csv and experiments.tsv,
`{group}-{label}`, e.g. `batch_size-bs16`), `seed`, the metric columns as training writes
them (`test_r2`, `test_accuracy`, ...) and optionally `status` (finished / diverged /
failed; missing = finished). W&B and MLflow exports need only their columns renamed
(docs/report.md). The study is a study file (or the mapping loaded from one): it says which
experiments answer which question.

`verdicts(study, runs)` returns verdicts.csv as a DataFrame; `analyse(study, runs)` the whole
result (hpstudy.analysis.analyse_study) and `write(result, out)` writes verdicts.csv,
recommended.yaml, stats.json and report.md. The workflow's aggregate step calls `analyse` on
its summary.csv, so a table from anywhere gets exactly the workflow's verdicts.
`hpstudy analyze STUDY.yaml RUNS.csv --out DIR` (and `python -m hpstudy.analyze`) is the
command line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy.analysis import ALPHA, analyse_study, write_outputs

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


def load(study: Any):
    """A Study from a study file's path or from the mapping loaded from one."""
    from hpstudy.study import load_study

    if isinstance(study, str | Path):
        return load_study(study)
    if isinstance(study, dict):
        import yaml

        name = study.get("name")
        if not isinstance(name, str) or not name:
            raise RunsError("study: the mapping has no `name`; give the study file's name")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(study, sort_keys=False))
            return load_study(path)
    return study  # already a Study


def task_of(study) -> str:
    from hpstudy.datasets import DATASET_TASKS

    return DATASET_TASKS[study.dataset["name"]]


def design_document(study, task: str | None = None) -> dict[str, Any]:
    """What analyse_study needs of a study: its groups (question, factors, baseline,
    experiments, kind, expect, contrasts), primary metric, sesoi and the resolved settings of
    every experiment (experiments.tsv)."""
    from hpstudy.metrics import primary_metric

    groups = {
        g.name: {
            "question": g.question,
            "hypothesis": g.hypothesis,
            "factors": g.factors,
            "baseline": f"{g.name}-{g.baseline}" if g.baseline else None,
            "experiments": [e.id for e in g.experiments],
            "kind": g.kind,
            "expect": g.expect,
            "contrasts": g.contrasts,
        }
        for g in study.groups.values()
    }
    table = study.table().drop(columns=["shared_with"])
    doc = {
        "name": study.name,
        "metric": primary_metric(task or task_of(study), study.metric),
        "sesoi": study.sesoi,
        "groups": groups,
        "experiments": table.to_dict(orient="records"),
    }
    return json.loads(json.dumps(doc, default=str))


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


def analyse(
    study: Any,
    runs: pd.DataFrame,
    alpha: float = ALPHA,
    alpha_final: float | None = None,
    task: str | None = None,
    source: str = "runs",
) -> dict[str, Any]:
    """Every question of `study` (a path, the loaded mapping or a Study) answered from `runs`
    (one row per run, see the module docstring): analyse_study's result, plus the checked
    table (`runs`) and the study's name."""
    study = load(study)
    doc = design_document(study, task)
    table = prepare_runs(runs, study, doc["metric"], source)
    result = analyse_study(table, doc, alpha=alpha, alpha_final=alpha_final)
    best = (result["recommended"] or {}).get("recommended")
    if best:  # the settings as the study resolved them (experiments.tsv holds lists as JSON)
        exp = next(e for e in study.experiments if e.id == best["experiment"])
        best["settings"] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in exp.config.to_dict().items()
            if k != "seed"
        }
    return {**result, "runs": table, "study": study.name}


def verdicts(study: Any, runs: pd.DataFrame) -> pd.DataFrame:
    """verdicts.csv of `study` (a path or the loaded mapping) from a table of runs."""
    return analyse(study, runs)["verdicts"]


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


def write(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """verdicts.csv, recommended.yaml, stats.json and report.md under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "verdicts": out / "verdicts.csv",
        "recommended": out / "recommended.yaml",
        "stats": out / "stats.json",
        "report": out / "report.md",
    }
    write_outputs(result, paths["stats"], paths["verdicts"], paths["recommended"])
    from hpstudy.atomic import write_text

    write_text(paths["report"], report(result))
    return paths


def report(result: dict[str, Any]) -> str:
    """The answers as markdown: the verdicts table, the rule, a worked example, the
    recommendation and each group's levels (the workflow's report adds figures and runs)."""
    import jinja2

    from hpstudy import paths
    from hpstudy.analysis import wording

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.templates()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    verdicts = result["verdicts"].astype(object).where(result["verdicts"].notna(), None)
    return env.get_template("analyze.md.j2").render(
        name=result["study"],
        metric=result["metric"],
        higher_is_better=result["higher_is_better"],
        sesoi=result["sesoi"],
        rule=result["rule"],
        worked_example=result["worked_example"],
        verdicts=verdicts.to_dict(orient="records"),
        groups=result["groups"],
        recommended=result["recommended"],
        n_runs=len(result["runs"]),
        n_ok=int((result["runs"]["status"] == "ok").sum()),
        verdict_ci="95% CI",
        verdict_words=wording.verdict_words,
        **_formats(),
    )


def _formats() -> dict[str, Any]:
    """The report's number formats (fmt, fmt_signed, fmt_p, p_is)."""
    from hpstudy import report

    return {f: getattr(report, f) for f in ("fmt", "fmt_signed", "fmt_p", "p_is")}


if __name__ == "__main__":  # python -m hpstudy.analyze: the `hpstudy analyze` command
    import sys

    from hpstudy.cli import main

    args = sys.argv[1:]
    sys.exit(main(["analyze", *args]))
