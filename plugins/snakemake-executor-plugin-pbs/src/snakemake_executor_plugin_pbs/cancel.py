"""qdel: many jobs per call (Ctrl-C on a workflow with hundreds of queued jobs)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

from .status import UNKNOWN_JOB
from .submit import Runner, run


def qdel(
    jobids: Sequence[str],
    runner: Runner = run,
    batch: int = 100,
    timeout: float = 60.0,
    warn: Callable[[str], None] = print,
) -> int:
    """Delete the jobs, ``batch`` ids per qdel call; returns the number of calls made.

    A running job gets SIGTERM, then SIGKILL after the queue's kill_delay, so it can save a
    checkpoint. Jobs that already finished ("Unknown Job Id", "Job has finished") are no
    error; any other failure is reported through ``warn`` and the next batch still goes.
    """
    calls = 0
    for start in range(0, len(jobids), batch):
        chunk = list(jobids[start : start + batch])
        calls += 1
        try:
            proc = runner(["qdel", *chunk], timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            warn(f"qdel of {len(chunk)} PBS jobs failed: {err}")
            continue
        problems = [
            line
            for line in (proc.stderr or "").splitlines()
            if line.strip() and not UNKNOWN_JOB.search(line) and "has finished" not in line.lower()
        ]
        if proc.returncode and problems:
            warn(f"qdel exit {proc.returncode}: {' '.join(problems)}")
    return calls
