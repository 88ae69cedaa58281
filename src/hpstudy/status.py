"""Where a study stands while Snakemake runs it (`hpstudy status [STUDY]`, hpstudy.cli).

Counts runs finished / running (epoch k of N, last validation metric, resumes so far) /
waiting / failed (the reason from the failure note) / diverged, names the scheduler job of
each running run where it is known, and estimates the time left from the finished runs.

It only reads files, never Snakemake's lock or metadata, so it runs beside a local or
cluster Snakemake at any time. What it reads, per run (see `LAYOUT`):
- `metrics.json` (written last by a finished run: ok or diverged, wall time),
- `*.progress.json` beside the checkpoint (rewritten every epoch by a training run: epoch,
  validation metric, resumes, host, pid, scheduler job id, epoch time),
- `*.failed.json` beside the checkpoint (why an attempt failed),
- the executors' files in `.snakemake/` (PBS job states, Slurm job logs; hpstudy.scheduler_jobs).
Existence is decided from one listing per folder, and only the files of runs that are not
waiting are opened, so a 10,000-run study takes well under 2 s on a local disk.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpstudy.scheduler_jobs import (
    JOB_KEY,
    SLURM_LOGS,
    scheduler_jobs,
    slurm_job,
    slurm_round_job,
)

# Where a run's files live, relative to the results folder: the one place that knows the
# run layout (fields: study, exp = experiment id, cfg = config hash, seed).
LAYOUT = {
    # one train job per configuration; each seed trains (and finishes) under checkpoints/,
    # and the job links the finished seeds into runs/{cfg}/ at its end (hpstudy.seeds)
    "metrics": "{study}/checkpoints/{cfg}/seed{seed}/metrics.json",
    "progress": "{study}/checkpoints/{cfg}/seed{seed}.progress.json",
    "failure": "{study}/checkpoints/{cfg}/seed{seed}.failed.json",
    "checkpoint": "{study}/checkpoints/{cfg}/seed{seed}.pt",
}

FINISHED, RUNNING, WAITING, FAILED, DIVERGED = (
    "finished",
    "running",
    "waiting",
    "failed",
    "diverged",
)
STATES = (FINISHED, RUNNING, WAITING, FAILED, DIVERGED)
STALE_AFTER_S = 900  # a progress file of another host older than this (+3 epochs): stopped


@dataclass
class Run:
    exp: str
    seed: int
    cfg: str = ""
    epochs: int | None = None
    state: str = WAITING
    detail: dict[str, Any] = field(default_factory=dict)

    def file(self, study: str, kind: str) -> str:
        return LAYOUT[kind].format(study=study, exp=self.exp, cfg=self.cfg, seed=self.seed)


@dataclass
class StudyStatus:
    study: str
    runs: list[Run]
    eta_s: float | None = None
    progress: Any = None  # a sequential study's hpstudy.rounds.Progress
    mean_run_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(r.state for r in self.runs)
        return {s: counts.get(s, 0) for s in STATES}

    @property
    def done(self) -> bool:
        counts = self.counts
        return counts[RUNNING] == 0 and counts[WAITING] == 0


# --------------------------------------------------------------------------- the study's runs


def _seeds_value(study_file: Path) -> Any:
    """The `seeds` value of a study file: its top-level line when it fits on one line (a
    10,000-experiment file takes seconds to parse), else the whole file."""
    import yaml

    text = study_file.read_text()
    m = re.search(r"^seeds:[ \t]*(\S[^\n#]*)", text, re.M)
    seeds = yaml.safe_load(m[1]) if m else None
    if seeds is None:
        seeds = (yaml.safe_load(text) or {}).get("seeds", 3)
    return seeds


def _seeds(study_file: Path) -> list[int]:
    """The seeds a fixed study file lists."""
    seeds = _seeds_value(study_file)
    if isinstance(seeds, dict):  # a sequential plan (issue 11): every seed up to max
        return list(range(int(seeds.get("max", 3))))
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def _plan_from_rounds(results: Path, study: str) -> dict[str, Any] | None:
    """The seed plan a study was run with, from its first round file: a study run
    sequentially with `--config seeds=...` has no plan in its file."""
    import yaml

    first = results / study / "rounds" / "round1.yaml"
    if not first.is_file():
        return None
    decision = yaml.safe_load(first.read_text()) or {}
    looks = [int(n) for n in decision.get("looks") or []]
    if not looks:
        return None
    return {
        "initial": looks[0],
        "max": looks[-1],
        "step": looks[1] - looks[0] if len(looks) > 1 else 1,
        "spending": decision.get("spending", "obrien_fleming"),
    }


def _planned_runs(spec, results: Path) -> tuple[list[Run], Any]:
    """A sequential study's runs planned so far (its round files), one per configuration
    and seed, and its hpstudy.rounds.Progress."""
    from hpstudy import rounds

    progress = rounds.progress(spec, results)
    runs, seen = [], set()
    for e in spec.experiments:
        if e.config_id in seen:
            continue
        seen.add(e.config_id)
        planned = progress.seeds[e.config_id] if progress else len(spec.seeds)
        runs += [Run(e.id, s, e.config_id, e.config.epochs) for s in spec.seeds[:planned]]
    return runs, progress


def expected_runs(
    study: str, results: Path, studies_dir: Path, seeds: Any = None
) -> tuple[list[Run], Any]:
    """Every run of the study, from `experiments.tsv` (written by the workflow's first
    jobs) when it is newer than the study file, else from the study file itself; and for a
    sequential study (its file's `seeds`, `seeds` = the workflow's `--config seeds=...`, or
    its round files) its hpstudy.rounds.Progress: only the runs planned so far.
    A missing or invalid study file raises hpstudy.studyfile.StudyError (its message names
    the file, the key and the fix; `hpstudy status` prints it)."""
    from hpstudy.study import load_study
    from hpstudy.studyfile import StudyError, missing_study

    study_file = studies_dir / f"{study}.yaml"
    table = results / study / "experiments.tsv"
    if not study_file.is_file():
        raise StudyError(missing_study(study_file))
    file_seeds = None if seeds is not None else _seeds_value(study_file)
    if seeds is None and not isinstance(file_seeds, dict):
        seeds = _plan_from_rounds(results, study)
    if seeds is not None or isinstance(file_seeds, dict):
        return _planned_runs(load_study(study_file, seeds), results)
    if table.is_file() and table.stat().st_mtime >= study_file.stat().st_mtime:
        with open(table, newline="") as fh:
            rows = [
                (r["experiment"], r.get("config_hash", ""), r.get("epochs"))
                for r in csv.DictReader(fh, delimiter="\t")
            ]
        seeds = _seeds(study_file)
    else:
        spec = load_study(study_file)
        rows = [
            (e.record()["experiment"], e.record()["config_hash"], e.config.epochs)
            for e in spec.experiments
        ]
        seeds = spec.seeds
    runs, seen = [], set()
    for exp, cfg, epochs in rows:  # experiments sharing a configuration share its runs
        if cfg and cfg in seen:
            continue
        seen.add(cfg)
        runs += [
            Run(exp, int(seed), cfg or "", int(float(epochs)) if epochs else None) for seed in seeds
        ]
    return runs, None


# --------------------------------------------------------------------------- reading files


class Listing:
    """`exists(path)` from one cached directory listing per folder; a folder missing from
    its parent's listing is never looked into (the runs still waiting cost no system
    call), and a folder asked about once costs one stat (a run's own output folder)."""

    def __init__(self, root: Path):
        self.root = str(root)
        self.cache: dict[str, frozenset[str]] = {}
        self.asked: set[str] = set()

    def names(self, folder: str) -> frozenset[str]:
        names = self.cache.get(folder)
        if names is None:
            parent, _, name = folder.rpartition("/")
            names = frozenset()
            if not folder or name in self.names(parent):
                try:
                    names = frozenset(os.listdir(f"{self.root}/{folder}"))
                except (FileNotFoundError, NotADirectoryError):
                    pass
            self.cache[folder] = names
        return names

    def exists(self, rel: str) -> bool:
        folder, _, name = rel.rpartition("/")
        if folder not in self.cache and folder not in self.asked:
            self.asked.add(folder)
            parent, _, base = folder.rpartition("/")
            return base in self.names(parent) and os.path.exists(f"{self.root}/{rel}")
        return name in self.names(folder)


def _json(path: str | Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return {}


_METRICS = re.compile(
    r'"(status|wall_time_s|diverged_epoch|job_id|hostname)": '
    r'("[^"]*"|[-+.0-9eE]+|null)'
)


def _metrics(path: str) -> dict[str, Any]:
    """The few keys of a finished run's metrics.json that status shows (a regular
    expression: parsing 10,000 whole files took most of the time)."""
    try:
        with open(path) as fh:
            return {k: json.loads(v) for k, v in _METRICS.findall(fh.read())}
    except (OSError, ValueError):
        return {}


def _alive(progress: dict[str, Any], job: dict[str, Any] | None, now: float) -> bool:
    """Is the process that wrote this progress file still training?"""
    if progress.get("hostname") == socket.gethostname() and progress.get("pid"):
        try:
            os.kill(int(progress["pid"]), 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process with that id: it exists
            return True
    if job is not None and job["scheduler"] == "PBS":  # it knows better than a file's age
        return job["status"] == "running"
    age_limit = STALE_AFTER_S + 3 * float(progress.get("epoch_s") or 0)
    return now - float(progress.get("updated") or 0) < age_limit


def study_status(
    study: str,
    results: str | Path = "results",
    studies_dir: str | Path = "config/studies",
    workdirs: list[Path] | None = None,
    now: float | None = None,
    seeds: Any = None,
) -> StudyStatus:
    """`seeds`: the workflow's `--config seeds=...` (parse_seeds_override's value)."""
    results, now = Path(results), time.time() if now is None else now
    runs, plan_progress = expected_runs(study, results, Path(studies_dir), seeds)
    listing, root = Listing(results), str(results)
    if workdirs is None:
        workdirs = list(dict.fromkeys([Path.cwd(), results.resolve().parent]))
    jobs = scheduler_jobs(workdirs)
    slurm = [w for w in workdirs if (w / ".snakemake" / "slurm_logs").is_dir()]
    run_times = []
    for run in runs:
        job = jobs.get(tuple(str(getattr(run, k)) for k in JOB_KEY))
        if job is not None:
            run.detail["job"] = job
        path = run.file(study, "metrics")
        if listing.exists(path):
            metrics = _metrics(f"{root}/{path}")
            run.state = DIVERGED if metrics.get("status") == "diverged" else FINISHED
            if metrics.get("wall_time_s"):
                run_times.append(float(metrics["wall_time_s"]))
            run.detail.update({k: metrics.get(k) for k in ("diverged_epoch", "job_id", "hostname")})
            continue
        files = {kind: run.file(study, kind) for kind in ("progress", "failure", "checkpoint")}
        progress = _json(f"{root}/{files['progress']}") if listing.exists(files["progress"]) else {}
        if job is None and slurm and (progress or listing.exists(files["failure"])):
            fields = {"study": study, "exp": run.exp, "cfg": run.cfg, "seed": run.seed}
            job = slurm_job(slurm, SLURM_LOGS.format(**fields)) or slurm_round_job(
                slurm, study, run.cfg
            )
            if job is not None:
                run.detail["job"] = job
        if progress and _alive(progress, job, now):
            run.state = RUNNING
            run.detail.update(progress)
        elif listing.exists(files["failure"]):
            run.state = FAILED
            run.detail["reason"] = _json(f"{root}/{files['failure']}").get("reason", "?")
        elif job is not None and job["status"] == "failed":  # PBS: walltime, qdel, ...
            run.state = FAILED
            run.detail["reason"] = f"{job['scheduler']} job {job['job_id']}: {job['reason']}"
        elif job is not None and job["status"] == "running":
            # the job (every seed of the configuration) is queued or on another seed: this
            # seed waits; the job's state says which
            run.state = WAITING
        else:
            run.state = WAITING
            if progress or listing.exists(files["checkpoint"]):
                run.detail["resume_epoch"] = progress.get("epoch")
    status = StudyStatus(study, runs, progress=plan_progress)
    _estimate(status, run_times)
    return status


def _estimate(status: StudyStatus, run_times: list[float]) -> None:
    """Time left: the work left (waiting runs x the mean run, plus what the running runs
    have left) spread over as many runs at once as are running now."""
    running = [r for r in status.runs if r.state == RUNNING]
    if run_times:
        status.mean_run_s = sum(run_times) / len(run_times)
    else:  # nothing finished yet: the running runs' epoch time x epochs
        guesses = [
            r.detail["epoch_s"] * r.detail["epochs"]
            for r in running
            if r.detail.get("epoch_s") and r.detail.get("epochs")
        ]
        status.mean_run_s = sum(guesses) / len(guesses) if guesses else None
    if status.mean_run_s is None:
        return
    left = sum(r.detail.get("eta_s") or status.mean_run_s for r in running)
    left += status.counts[WAITING] * status.mean_run_s
    status.eta_s = left / max(len(running), 1)


# --------------------------------------------------------------------------- printing


def _duration(seconds: float | None) -> str:
    from hpstudy.formatting import duration

    return "?" if seconds is None or not math.isfinite(seconds) else duration(seconds)


def _job(run: Run) -> str:
    job = run.detail.get("job")
    if job is not None:
        return f"{job['scheduler']} job {job['job_id']} ({job['reason']})"
    where = run.detail.get("hostname")
    job_id = run.detail.get("job_id")
    return " ".join(
        filter(None, [f"job {job_id}" if job_id else "", f"on {where}" if where else ""])
    )


def _line(run: Run) -> str:
    d, name = run.detail, f"{run.exp} seed{run.seed}"
    if run.state == RUNNING:
        if d.get("epoch") is None:
            return f"{name}: starting or queued; {_job(run)}"
        metric = d.get("val_metric")
        return (
            f"{name}: epoch {d['epoch']} of {d.get('epochs') or run.epochs}"
            + (f", val {metric:.4g}" if isinstance(metric, int | float) else "")
            + f", resumes {d.get('resumes', 0)}, ETA {_duration(d.get('eta_s'))}; "
            + _job(run)
        )
    if run.state == FAILED:
        job = d.get("job")
        return f"{name}: {d.get('reason')}" + (f"; {_job(run)}" if job else "")
    if run.state == DIVERGED:
        return f"{name}: diverged at epoch {d.get('diverged_epoch')}"
    return name


def render(status: StudyStatus, limit: int = 20) -> str:
    counts = status.counts
    resumable = sum(1 for r in status.runs if r.state == WAITING and "resume_epoch" in r.detail)
    runs = f"{len(status.runs)} runs"
    if status.progress is not None:  # sequential: the runs planned so far, and the most
        runs = status.progress.text() + ";"
    lines = [f"study {status.study}: {runs}  " + "  ".join(f"{s} {counts[s]}" for s in STATES)]
    if resumable:
        lines.append(f"  {resumable} waiting run(s) will resume from a checkpoint")
    if status.done:
        lines.append("  nothing left to run")
    elif status.eta_s is None:
        lines.append("  ETA: known once a run has trained an epoch")
    else:
        lines.append(
            f"  ETA {_duration(status.eta_s)} (mean run {_duration(status.mean_run_s)}"
            f", {counts[RUNNING]} running at once)"
        )
    for state in (RUNNING, FAILED, DIVERGED):
        runs = [r for r in status.runs if r.state == state]
        if runs:
            lines.append(f"{state}:")
            lines += [f"  {_line(r)}" for r in runs[:limit]]
            if len(runs) > limit:
                lines.append(f"  ... and {len(runs) - limit} more")
    return "\n".join(lines)
