"""Per-study aggregation: from the extract records to summary.csv (one row per experiment x
seed), study.json (the study's questions and data, no tables), per-group tables, stats.json
and the study-level per-epoch curves and per-layer tables the report draws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy import analyze
from hpstudy.analysis import worked_example, write_outputs
from hpstudy.integrity import read_csv, read_json
from hpstudy.metrics import LOWER_IS_BETTER, metric_columns
from hpstudy.metrics import primary_metric as task_primary_metric
from hpstudy.stats import mean_ci
from hpstudy.study import Study
from hpstudy.timeline import compute_table, timeline_table

COST_METRICS = [
    "epochs_run",
    "best_epoch",
    "optimizer_steps",
    "train_time_s",
    "time_per_epoch_s",
    "throughput_samples_per_s",
    "peak_memory_mb",
    "memory_efficiency",
]
__all__ = ["LOWER_IS_BETTER", "mean_ci", "metric_columns"]  # re-exported for older callers


def primary_metric(study: Study, task: str) -> str:
    return task_primary_metric(task, study.metric)


def group_table(
    runs: pd.DataFrame, metrics: list[str], factors: dict[str, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """One row per experiment: its factor values (`factors[experiment]`), n runs, n ok, and
    mean/SD/95% CI over seeds per metric."""
    rows = []
    for exp, frame in runs.groupby("experiment", sort=False):
        ok = frame[frame["status"] == "ok"]
        row: dict[str, Any] = {
            "experiment": exp,
            "label": frame["label"].iloc[0],
            **(factors or {}).get(exp, {}),
            "n_runs": len(frame),
            "n_ok": len(ok),
            "n_diverged": int((frame["status"] == "diverged").sum()),
        }
        for metric in metrics:
            if metric not in ok:
                continue
            mean, sd, lo, hi = mean_ci(ok[metric].to_numpy(dtype=float))
            row.update(
                {
                    f"{metric}_mean": mean,
                    f"{metric}_sd": sd,
                    f"{metric}_ci_low": lo,
                    f"{metric}_ci_high": hi,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def load_records(paths: list[str | Path]) -> pd.DataFrame:
    """The extract records (one file per configuration, one record per seed)."""
    records = []
    for path in paths:
        data = read_json(path)
        records.extend(data if isinstance(data, list) else [data])
    return pd.DataFrame(records)


def per_experiment(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment x seed from one row per configuration x seed: a run shared by
    several experiments (of several groups) appears under each, with `shared` true."""
    if runs.empty:
        return runs
    by_config = {cfg: frame for cfg, frame in runs.groupby("config_hash", sort=False)}
    configs = study.configs()
    frames = []
    for exp in study.experiments:
        frame = by_config.get(exp.config_id)
        if frame is None:
            continue
        frame = frame.copy()
        sharing = configs[exp.config_id]
        frame.insert(0, "label", exp.label)
        frame.insert(0, "group", exp.group)
        frame.insert(0, "experiment", exp.id)
        frame.insert(0, "study", study.name)
        frame.insert(5, "shared", len(sharing) > 1)
        frame.insert(6, "shared_with", ",".join(e.id for e in sharing if e.id != exp.id))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else runs.iloc[0:0]


def _read_tables(paths: list[str | Path]) -> pd.DataFrame:
    frames = [frame for frame in map(read_csv, paths) if len(frame.columns)]  # not empty files
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def study_tables(
    study: Study,
    curve_files: list[str | Path],
    layer_files: list[str | Path],
    out_curves: str | Path | None,
    out_layers: str | Path | None,
) -> None:
    """curves.csv.gz (per experiment x seed x epoch) and layers.csv.gz (per experiment x seed
    x step x layer, from the diagnostics) from the extract tables of every configuration."""
    from hpstudy.atomic import write_csv

    for files, out in ((curve_files, out_curves), (layer_files, out_layers)):
        if out is None:
            continue
        table = _read_tables(files)
        if not table.empty:
            table = per_experiment(study, table).drop(columns=["shared_with", "study"])
        write_csv(out, table)


def study_document(
    study: Study,
    manifest: dict[str, Any],
    missing: list[str],
    reasons: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The study's questions, design and data; the tables live in experiments.tsv and
    summary.csv, not here."""
    return {
        "name": study.name,
        "description": study.description,
        "seeds": study.seeds,
        "dataset": study.dataset,
        "base": study.base,
        "metric": primary_metric(study, manifest["task"]),
        "task": manifest["task"],
        "references": study.references,
        "sesoi": study.sesoi,
        "deviations": study.deviations,
        "groups": analyze.questions(study),
        "prepared": {
            k: manifest[k]
            for k in (
                "content_sha256",
                "source_sha256",
                "n_samples",
                "split_sizes",
                "image_shape",
                "source",
                "data_quality",
                "task",
                "num_classes",
            )
        },
        "partial": bool(missing),
        "missing_runs": missing,
        "missing_reasons": reasons or {},  # run -> why it failed, where a note says
        "shared": {
            cfg: [e.id for e in exps] for cfg, exps in study.configs().items() if len(exps) > 1
        },  # config id -> the experiments that share its runs
    }


class MissingRunsError(RuntimeError):
    """Some runs of the study have no results; aggregation refuses unless partial is allowed."""


def failure_reasons(
    study_dir: str | Path, runs: list[str], config_ids: dict[str, str] | None = None
) -> dict[str, str]:
    """Why missing runs (`{exp}/seed{N}`) failed, from the notes training leaves beside the
    checkpoints (`checkpoints/{config id}/seed{N}.failed.json`, failures.failure_note_path)."""
    reasons = {}
    for run in runs:
        exp, seed = run.split("/")
        note = (
            Path(study_dir)
            / "checkpoints"
            / (config_ids or {}).get(exp, exp)
            / f"{seed}.failed.json"
        )
        try:
            reasons[run] = json.loads(note.read_text())["reason"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no note: never started, killed, or still running
    return reasons


def check_runs(
    study: Study,
    summary: pd.DataFrame,
    expected: list[str],
    study_dir: Path,
    allow_partial: bool,
) -> tuple[list[str], dict[str, str]]:
    """The expected runs (`{exp}/seed{N}`) without results and why they failed (the notes
    training leaves); MissingRunsError when any is missing and a partial report is not
    allowed, or when nothing finished at all."""
    found = (
        set() if summary.empty else {f"{r.experiment}/seed{r.seed}" for r in summary.itertuples()}
    )
    missing = [run for run in expected if run not in found]
    reasons = failure_reasons(study_dir, missing, {e.id: e.config_id for e in study.experiments})
    if missing and not allow_partial:
        known = "".join(f"\n  {run}: {why}" for run, why in list(reasons.items())[:10])
        raise MissingRunsError(
            f"study {study.name}: {len(missing)} of {len(expected)} runs have no results: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; rerun them, or pass "
            "--config allow_partial=true for a report marked as partial"
            + (f"\nknown failures:{known}" if known else "")
        )
    if summary.empty:
        raise MissingRunsError(
            f"study {study.name}: no finished runs to aggregate; allow_partial=true reports "
            "only runs that have finished, so run the study first (e.g. with --keep-going)"
        )
    return missing, reasons


def in_study_order(study: Study, summary: pd.DataFrame, with_rounds: bool) -> pd.DataFrame:
    """summary.csv's rows in study order (experiments as the file lists them, then seeds);
    `with_rounds` (a sequential study): a `round` column, the round that ran the seed."""
    order = {e.id: i for i, e in enumerate(study.experiments)}
    summary = summary.sort_values(
        ["experiment", "seed"],
        key=lambda c: c.map(order) if c.name == "experiment" else c,
        kind="stable",
    )
    if with_rounds and study.plan is not None:
        looks = study.plan.looks
        summary.insert(
            5,
            "round",
            [
                next((k for k, n in enumerate(looks, 1) if study.seeds.index(s) < n), len(looks))
                for s in summary["seed"]
            ],
        )
    return summary


def write_group_tables(
    study: Study, summary: pd.DataFrame, metrics: list[str], out_groups: str | Path
) -> None:
    """groups/{group}.csv: one row per experiment of the group (group_table); empty for a
    group without runs."""
    from hpstudy.atomic import write_csv

    out_groups = Path(out_groups)
    out_groups.mkdir(parents=True, exist_ok=True)
    for name, group in study.groups.items():
        runs = summary[summary["group"] == name]
        factors = {
            e.id: {f: _plain(getattr(e.config, f, None)) for f in group.factors}
            for e in group.experiments
        }
        table = group_table(runs, metrics, factors) if not runs.empty else pd.DataFrame()
        write_csv(out_groups / f"{name}.csv", table)


def aggregate_study(
    study_file: str | Path,
    prepared: str | Path,
    records: list[str | Path],
    out_summary: str | Path,
    out_study: str | Path,
    out_groups: str | Path,
    all_runs: list[str] | None = None,
    allow_partial: bool = False,
    out_stats: str | Path | None = None,
    curves: list[str | Path] = (),
    layers: list[str | Path] = (),
    out_curves: str | Path | None = None,
    out_layers: str | Path | None = None,
    out_verdicts: str | Path | None = None,
    out_recommended: str | Path | None = None,
    rounds: str | Path | None = None,
    out_timeline: str | Path | None = None,
    out_compute: str | Path | None = None,
    seeds: Any = None,
) -> pd.DataFrame:
    """Write summary.csv (one row per experiment x seed, in study order), study.json,
    groups/*.csv, (given out_curves/out_layers) the study's per-epoch and per-layer tables,
    and the analysis (hpstudy.analyze.analyse, the engine of `hpstudy analyze`): stats.json,
    verdicts.csv and recommended.yaml.
    `rounds`: a sequential study's last round file (rounds/round{k}.yaml, issue 11): each
    question's verdict is the one of the round that decided it (verdicts.csv gains `round`
    and `seeds`), and summary.csv a `round` column (the round that ran the seed).
    `out_timeline`/`out_compute`: every attempt of every run (timeline.csv) and the compute
    spent per study and group (compute.csv).

    `seeds`: the workflow's `--config seeds=...` override of the study file's seeds."""
    from hpstudy.atomic import write_csv, write_json
    from hpstudy.study import load_study

    study = load_study(study_file, seeds)
    prepared = Path(prepared)  # the manifest, or the prepared file beside it
    manifest_file = prepared if prepared.suffix == ".json" else prepared.with_name("manifest.json")
    manifest = read_json(manifest_file)
    summary = per_experiment(study, load_records(records))
    expected = all_runs or [f"{e}/seed{s}" for e, s in study.runs()]
    missing, reasons = check_runs(study, summary, expected, Path(out_summary).parent, allow_partial)
    summary = in_study_order(study, summary, rounds is not None)
    write_csv(out_summary, summary)
    write_group_tables(study, summary, metric_columns(manifest["task"]) + COST_METRICS, out_groups)
    study_tables(study, list(curves), list(layers), out_curves, out_layers)
    if out_timeline is not None or out_compute is not None:
        timeline = timeline_table(study, summary, Path(out_summary).parent, missing)
        if out_timeline is not None:
            write_csv(out_timeline, timeline)
        if out_compute is not None:
            write_csv(out_compute, compute_table(study, timeline))
    document = study_document(study, manifest, missing, reasons)
    write_json(out_study, document)
    if out_stats is not None or out_verdicts is not None or out_recommended is not None:
        # the very code `hpstudy analyze` runs on a table of runs from anywhere
        result = analyze.analyse(study, summary, task=manifest["task"], source=str(out_summary))
        if rounds is not None:
            import yaml

            from hpstudy import rounds as rounds_

            with open(rounds) as fh:
                decision = yaml.safe_load(fh)
            result["verdicts"] = rounds_.verdict_table(decision, study)
            # the worked example explains a row of verdicts.csv, at its look's level
            result["worked_example"] = worked_example(result["verdicts"].to_dict("records"))
            document["sequential"] = rounds_.study_part(decision, study)
            write_json(out_study, document)
        write_outputs(result, out_stats, out_verdicts, out_recommended)
    return summary


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def round_inputs(
    study_file: str | Path, manifest: str | Path, records: list[str | Path], seeds: Any = None
) -> tuple[Study, pd.DataFrame, dict[str, Any]]:
    """What a sequential study's round decision reads: the study (with the `seeds`
    override), the runs finished so far (one row per experiment x seed) and the design
    document analyse_study expects."""
    from hpstudy.study import load_study

    study = load_study(study_file, seeds)
    manifest_data = read_json(manifest)
    summary = per_experiment(study, load_records(records))
    document = study_document(study, manifest_data, [])
    table = study.table().drop(columns=["shared_with"])
    design = {**document, "experiments": table.to_dict(orient="records")}
    return study, summary, json.loads(json.dumps(design, default=str))
