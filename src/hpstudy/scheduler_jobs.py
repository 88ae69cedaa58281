"""Which scheduler job a run of a study is in, from the files the executors leave in the
work folder (hpstudy.status asks here; nothing is queried from the scheduler itself):

- Slurm: the plugin's log folder of each train job, .snakemake/slurm_logs/rule_train/
  {study}_{cfg}/{jobid}.log, written once the job starts;
- PBS: the PBS profile's .snakemake/pbs/jobs.jsonl (every submission) and status.json (the
  last state qstat gave each job).

A job is a dict: scheduler, job_id, status (running, started, failed, ...), reason.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

# JOB_KEY: the wildcards that name one `train` job, to match scheduler jobs to their runs.
JOB_KEY = ("cfg",)
# The Slurm plugin's log folder of one train job, under .snakemake/slurm_logs/ (its
# wildcards joined by "_"); the job writes {jobid}.log there once it starts.
SLURM_LOGS = "rule_train/{study}_{cfg}"
# a sequential study's train jobs are rule train_round's, one per round: {study}_{k}_{cfg}
SLURM_ROUND_LOGS = "rule_train_round"


def _json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return {}


def slurm_job(workdirs: list[Path], folder: str) -> dict[str, Any] | None:
    """The newest Slurm job that started for one train job (from its log's name)."""
    for workdir in workdirs:
        try:
            logs = os.listdir(workdir / ".snakemake" / "slurm_logs" / folder)
        except OSError:
            continue
        ids = sorted(
            (name[:-4] for name in logs if name.endswith(".log")),
            key=lambda i: [int(p) if p.isdigit() else 0 for p in re.split(r"\D", i)],
        )
        if ids:
            return {
                "scheduler": "Slurm",
                "job_id": ids[-1],
                "status": "started",
                "reason": f"log .snakemake/slurm_logs/{folder}/{ids[-1]}.log",
            }
    return None


def slurm_round_job(workdirs: list[Path], study: str, cfg: str) -> dict[str, Any] | None:
    """The newest Slurm job of a sequential study's train jobs for one configuration: the
    log folder of its latest round that has one."""
    pattern = re.compile(rf"{re.escape(study)}_(\d+)_{re.escape(cfg)}")
    for workdir in workdirs:
        try:
            folders = os.listdir(workdir / ".snakemake" / "slurm_logs" / SLURM_ROUND_LOGS)
        except OSError:
            continue
        rounds = sorted(
            ((int(m.group(1)), name) for name in folders if (m := pattern.fullmatch(name))),
            reverse=True,
        )
        for _, name in rounds:
            job = slurm_job([workdir], f"{SLURM_ROUND_LOGS}/{name}")
            if job is not None:
                return job
    return None


def scheduler_jobs(workdirs: list[Path]) -> dict[tuple, dict[str, Any]]:
    """PBS jobs of the `train` rule by JOB_KEY (the latest submission wins), with their
    last known state, from the PBS profile's files in `.snakemake/pbs/`."""
    jobs: dict[tuple, dict[str, Any]] = {}
    for workdir in workdirs:
        state_dir = workdir / ".snakemake" / "pbs"
        board = _json(state_dir / "status.json")
        try:
            lines = (state_dir / "jobs.jsonl").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            wildcards = rec.get("wildcards") or {}
            if rec.get("rule") not in ("train", "train_round") or not all(
                k in wildcards for k in JOB_KEY
            ):
                continue
            short = str(rec["jobid"]).split(".", 1)[0]
            status, reason = (
                board.get("final", {}).get(short)
                or board.get("live", {}).get(short)
                or ["running", "submitted"]
            )
            key = tuple(str(wildcards[k]) for k in JOB_KEY)
            jobs[key] = {
                "scheduler": "PBS",
                "job_id": rec["jobid"],
                "status": status,
                "reason": reason,
            }
    return jobs
