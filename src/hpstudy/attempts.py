"""Every attempt of a training run, kept: its full log and a record of when, where and why.

Snakemake deletes a job's log before each attempt, so the epochs of an attempt killed at
walltime used to vanish with the retry. Here each attempt writes its output (stdout and
stderr, Python and C level) straight into a log next to the run's checkpoint, outside
Snakemake's outputs, and a record of every attempt sits beside it:

    results/{study}/checkpoints/{exp}/seed{N}.pt             the checkpoint (while unfinished)
    results/{study}/checkpoints/{exp}/seed{N}.attempts.log   every attempt's output, appended
    results/{study}/checkpoints/{exp}/seed{N}.attempts.json  [{attempt, start, end, wall_s,
                                                             host, job_id, ended, submitted,
                                                             threads, device, gpu}, ...]

`submitted` is when the batch job was submitted (Unix seconds, from HPSTUDY_SUBMIT_TIME, which
profiles/pbs passes to every PBS job), else None: a local run has no queue. `threads`, `device`
and `gpu` (CUDA_VISIBLE_DEVICES on a GPU) are what the training process says it runs on;
they price the attempt in CPU- and GPU-hours (hpstudy.timeline.compute_table).

When the attempt ends (finished, interrupted by SIGTERM, failed), its part of the log is also
copied into the Snakemake log, so `show-failed-logs` still prints it; an attempt killed
outright (SIGKILL, OOM killer, node failure) leaves its record open, and the next attempt
marks it as such. The log and the record start afresh when a run starts again after it had
finished (a forced rerun).

    with attempts.track(checkpoint, snakemake_log):   # in the train script
        ...
    with attempts.track_all(checkpoints, snakemake_log, resources):  # fused seeds: one
        ...                                       # attempt on each seed's record and log
    metrics.update(attempts.summary(checkpoint))      # total and per-attempt wall time
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpstudy.atomic import write_json
from hpstudy.failures import EXIT_INTERRUPTED, EXIT_OUT_OF_MEMORY, Interrupted
from hpstudy.logs import redirect_to

FINISHED = "finished"
KILLED = "killed without a word (SIGKILL, out-of-memory killer or node failure?)"
JOB_ID_VARS = ("PBS_JOBID", "SLURM_JOB_ID")
SUBMIT_TIME_VAR = "HPSTUDY_SUBMIT_TIME"  # Unix seconds when the batch job was submitted


def log_path(checkpoint: str | os.PathLike) -> Path:
    """`seed0.pt` -> `seed0.attempts.log`: every attempt's training log."""
    return Path(checkpoint).with_suffix(".attempts.log")


def record_path(checkpoint: str | os.PathLike) -> Path:
    """`seed0.pt` -> `seed0.attempts.json`: one entry per attempt."""
    return Path(checkpoint).with_suffix(".attempts.json")


def load(checkpoint: str | os.PathLike) -> list[dict[str, Any]]:
    try:
        data = json.loads(record_path(checkpoint).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return data if isinstance(data, list) else []


def _job_id(env: dict[str, str] | os._Environ) -> str | None:
    return next((env[v] for v in JOB_ID_VARS if env.get(v)), None)


def _submitted(env: dict[str, str] | os._Environ) -> float | None:
    try:
        return float(env[SUBMIT_TIME_VAR])
    except (KeyError, ValueError):
        return None


def begin(
    checkpoint: str | os.PathLike,
    now: float | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Open a new attempt in the record (and close a previous one left open by a kill).
    `resources`: what the attempt runs on (threads, device, gpu), kept in its entry."""
    now = time.time() if now is None else now
    entries = load(checkpoint)
    if entries and entries[-1].get("ended") == FINISHED:  # a finished run started again
        entries = []
        log_path(checkpoint).unlink(missing_ok=True)
    for entry in entries:
        if entry.get("ended") is None:
            entry["ended"] = KILLED
    entry = {
        "attempt": len(entries) + 1,
        "start": now,
        "end": None,
        "wall_s": None,
        "host": socket.gethostname(),
        "job_id": _job_id(os.environ),
        "pid": os.getpid(),
        "ended": None,
        "submitted": _submitted(os.environ),
        **{k: (resources or {}).get(k) for k in ("threads", "device", "gpu")},
    }
    if (resources or {}).get("fused_seeds"):  # seeds sharing this attempt (hpstudy.fused)
        entry["fused_seeds"] = int(resources["fused_seeds"])
    entries.append(entry)
    record_path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    write_json(record_path(checkpoint), entries)
    return entry


def end(checkpoint: str | os.PathLike, why: str, now: float | None = None) -> None:
    """Close the current (last) attempt with the reason it ended."""
    now = time.time() if now is None else now
    entries = load(checkpoint)
    if not entries:
        return
    entry = entries[-1]
    entry["end"], entry["wall_s"], entry["ended"] = now, now - entry["start"], why
    write_json(record_path(checkpoint), entries)


def summary(checkpoint: str | os.PathLike, now: float | None = None) -> dict[str, Any]:
    """For metrics.json, at the end of the run's last attempt: total wall time over all
    attempts, the last attempt's, and every attempt (start, end, host, job id, why it ended).
    An attempt killed outright (SIGKILL) has no end and counts with no wall time: unknown."""
    now = time.time() if now is None else now
    entries = load(checkpoint)
    if not entries:  # not run through track(): the metrics keep this process's wall time
        return {}
    attempts = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        if entry.get("end") is None:
            if i + 1 < len(entries):  # killed outright: it ended before the next one began
                entry["ended"] = entry.get("ended") or KILLED
            else:  # the attempt now finishing
                entry["end"], entry["ended"] = now, FINISHED
                entry["wall_s"] = now - entry["start"]
        attempts.append(entry)
    walls = [a["wall_s"] for a in attempts if a.get("wall_s") is not None]
    return {
        "wall_time_s": sum(walls),  # all attempts: what the run cost
        "wall_time_last_attempt_s": walls[-1] if walls else None,
        "attempts": len(attempts),
        "attempt_wall_times_s": walls,
        "attempt_log": str(log_path(checkpoint)),
        "attempt_records": attempts,
    }


def _why(exc: BaseException | None) -> str:
    if exc is None:
        return FINISHED
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0:
            return FINISHED
        if code == EXIT_INTERRUPTED:
            return "interrupted by a signal (SIGTERM: walltime or qdel/scancel); checkpoint saved"
        if code == EXIT_OUT_OF_MEMORY:
            return f"failed: out of memory (exit {EXIT_OUT_OF_MEMORY})"
        return f"failed: exit status {code}"
    if isinstance(exc, Interrupted):
        return "interrupted by a signal (SIGTERM: walltime or qdel/scancel); checkpoint saved"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"failed: {type(exc).__name__}: {first}"


@contextlib.contextmanager
def tee(
    path: str | os.PathLike,
    job_log: str | os.PathLike | None = None,
    copies: tuple[str | os.PathLike, ...] = (),
) -> Iterator[None]:
    """Send this process's stdout and stderr (Python and C level) to `path` AND, live, to
    `job_log` (or, without one, to where stderr went before): the job's log keeps showing
    progress while every line is also kept beside the checkpoint. The descriptors point at
    `path` itself (append mode), so a line written is kept even if the process is killed the
    next instant (SIGKILL, OOM killer; logs.redirect_to does the pointing); a thread follows
    the file into the job's log. A child process that inherited the descriptors (a
    DataLoader worker) cannot hang the exit. `copies`: further files (appended) that the
    thread also copies every line into (the other seeds of a fused attempt)."""
    sys.stderr.flush()
    if job_log is not None:
        Path(job_log).parent.mkdir(parents=True, exist_ok=True)
        live = open(job_log, "ab", buffering=0)
    else:
        live = os.fdopen(os.dup(2), "wb", buffering=0)  # where stderr went before
    Path(path).touch()
    others = [open(copy, "ab", buffering=0) for copy in copies]
    follow = open(path, "rb", buffering=0)
    follow.seek(0, os.SEEK_END)
    done = threading.Event()

    def pump() -> None:
        while True:
            finished = done.is_set()  # read once more after the last write
            chunk = follow.read(65536)
            if chunk:
                live.write(chunk)
                for other in others:
                    other.write(chunk)
            elif finished:
                return
            else:
                done.wait(0.05)

    thread = threading.Thread(target=pump, name="hpstudy-tee", daemon=True)
    thread.start()
    try:
        with redirect_to(path):
            yield
    finally:
        done.set()
        thread.join(timeout=10)
        if not thread.is_alive():
            follow.close()
            live.close()
            for other in others:
                other.close()


@contextlib.contextmanager
def track(
    checkpoint: str | os.PathLike,
    job_log: str | os.PathLike | None = None,
    resources: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run one attempt: its output goes, live, both to the attempts log beside the
    checkpoint and to `job_log` (Snakemake's log of the job, which Snakemake deletes before
    a retry) or, without one, to stderr as before; the attempt is recorded (with
    `resources`: threads, device, gpu)."""
    with track_all([checkpoint], job_log, resources) as entries:
        yield entries[0]


@contextlib.contextmanager
def track_all(
    checkpoints: list[str | os.PathLike],
    job_log: str | os.PathLike | None = None,
    resources: dict[str, Any] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """`track` for one attempt shared by several runs (the seeds of a fused group,
    hpstudy.fused): each run's record gets the attempt, and each run's attempts log every
    line of it (the first's directly, the others' through the tee's thread)."""
    paths = [log_path(checkpoint) for checkpoint in checkpoints]
    entries = [begin(checkpoint, resources=resources) for checkpoint in checkpoints]
    for path, entry in zip(paths, entries, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(entry["start"]))
            job = f", job {entry['job_id']}" if entry["job_id"] else ""
            fh.write(f"=== attempt {entry['attempt']}: started {stamp} on {entry['host']}{job}\n")
    why = FINISHED
    try:
        with tee(paths[0], job_log, tuple(paths[1:])):
            try:
                yield entries
            except BaseException as exc:
                why = _why(exc)
                if not isinstance(exc, SystemExit | KeyboardInterrupt):
                    traceback.print_exc()  # into the kept log, not only the console
                raise
    finally:
        for checkpoint, path, entry in zip(checkpoints, paths, entries, strict=True):
            end(checkpoint, why)
            with open(path, "a") as fh:
                fh.write(f"=== attempt {entry['attempt']} ended: {why}\n")
        note = "(every attempt's training log: " + ", ".join(map(str, paths)) + ")\n"
        if job_log is not None:
            with open(job_log, "a") as fh:
                fh.write(note)
        else:
            sys.stderr.write(note)
        sys.stderr.flush()
