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
`hpstudy analyze STUDY.yaml RUNS.csv --out DIR` (hpstudy.cli; also `python -m
hpstudy.analyze`) is the command line; hpstudy.analyze.table checks the table.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy.analysis import ALPHA, analyse_study, write_outputs
from hpstudy.analyze.table import RunsError, prepare_runs, read_runs

__all__ = ["RunsError", "analyse", "load", "read_runs", "report", "verdicts", "write"]


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


def questions(study) -> dict[str, dict[str, Any]]:
    """Each group's question as the analysis reads it: question, hypothesis, factors,
    baseline, experiments, kind, expect and contrasts (also study.json's `groups`)."""
    return {
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


def design_document(study, task: str | None = None) -> dict[str, Any]:
    """What analyse_study needs of a study: its groups (question, factors, baseline,
    experiments, kind, expect, contrasts), primary metric, sesoi and the resolved settings of
    every experiment (experiments.tsv)."""
    from hpstudy.metrics import primary_metric

    groups = questions(study)
    table = study.table().drop(columns=["shared_with"])
    doc = {
        "name": study.name,
        "metric": primary_metric(task or task_of(study), study.metric),
        "sesoi": study.sesoi,
        "groups": groups,
        "experiments": table.to_dict(orient="records"),
    }
    return json.loads(json.dumps(doc, default=str))


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
    from hpstudy import paths
    from hpstudy.analysis import wording

    verdicts = result["verdicts"].astype(object).where(result["verdicts"].notna(), None)
    return paths.template("analyze.md.j2").render(
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
    from hpstudy import formatting

    return {f: getattr(formatting, f) for f in ("fmt", "fmt_signed", "fmt_p", "p_is")}
