"""Every attempt of a training run is kept: its log and its record (hpstudy.attempts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hpstudy import attempts

SCRIPT = """
import sys, time
from hpstudy import attempts
checkpoint, job_log, how = sys.argv[1:4]
with attempts.track(checkpoint, job_log):
    print("epoch 1/3 train_loss 0.5", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if how == "sigterm":
        sys.exit(143)
    if how == "crash":
        raise RuntimeError("boom")
    if how == "sigkill":
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    print("epoch 3/3 done", flush=True)
"""


def attempt(tmp_path, how, job_id=None):
    """One attempt as the train script makes it: a process, Snakemake's log deleted first."""
    job_log = tmp_path / "logs" / "seed0.log"
    job_log.unlink(missing_ok=True)  # what Snakemake does before every attempt
    env = {k: v for k, v in os.environ.items() if k not in attempts.JOB_ID_VARS}
    if job_id:
        env["PBS_JOBID"] = job_id
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "ck" / "seed0.pt"), str(job_log), how],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return proc, job_log


def test_every_attempt_is_kept_and_recorded(tmp_path):
    checkpoint = tmp_path / "ck" / "seed0.pt"
    proc, job_log = attempt(tmp_path, "sigterm", job_id="38.pbshost")
    assert proc.returncode == 143
    proc, job_log = attempt(tmp_path, "crash", job_id="39.pbshost")
    assert proc.returncode == 1 and "RuntimeError: boom" in job_log.read_text()
    proc, job_log = attempt(tmp_path, "sigkill")
    assert proc.returncode == -9
    proc, job_log = attempt(tmp_path, "ok", job_id="41.pbshost")
    assert proc.returncode == 0, proc.stderr

    log = attempts.log_path(checkpoint).read_text()
    assert log.count("epoch 1/3") == 4 and log.count("to stderr") == 4  # nothing lost
    assert "=== attempt 1: started" in log and "job 38.pbshost" in log
    assert "attempt 1 ended: interrupted by a signal (SIGTERM" in log
    assert "attempt 2 ended: failed" in log and "boom" in log
    assert "attempt 4 ended: finished" in log
    # Snakemake's log holds this attempt and says where all of them are
    job_text = job_log.read_text()
    assert job_text.count("epoch 1/3") == 1 and "epoch 3/3 done" in job_text
    assert str(attempts.log_path(checkpoint)) in job_text

    record = json.loads(attempts.record_path(checkpoint).read_text())
    assert [r["attempt"] for r in record] == [1, 2, 3, 4]
    assert [r["job_id"] for r in record] == ["38.pbshost", "39.pbshost", None, "41.pbshost"]
    assert record[0]["ended"].startswith("interrupted")
    assert record[1]["ended"].startswith("failed: RuntimeError: boom")
    assert record[2]["ended"] == attempts.KILLED and record[2]["end"] is None
    assert record[3]["ended"] == attempts.FINISHED
    assert all(r["host"] for r in record)


def test_summary_totals_every_attempt(tmp_path):
    checkpoint = tmp_path / "seed0.pt"
    attempts.begin(checkpoint, now=100.0)
    attempts.end(checkpoint, "interrupted", now=130.0)
    attempts.begin(checkpoint, now=200.0)  # killed outright: never ended
    attempts.begin(checkpoint, now=300.0)
    summary = attempts.summary(checkpoint, now=340.0)
    assert summary["attempts"] == 3
    assert summary["attempt_wall_times_s"] == [30.0, 40.0]
    assert summary["wall_time_s"] == pytest.approx(70.0)
    assert summary["wall_time_last_attempt_s"] == pytest.approx(40.0)
    assert summary["attempt_records"][1]["ended"] == attempts.KILLED


def test_a_finished_run_started_again_starts_a_fresh_record(tmp_path):
    checkpoint = tmp_path / "seed0.pt"
    attempts.begin(checkpoint, now=1.0)
    attempts.end(checkpoint, attempts.FINISHED, now=2.0)
    attempts.log_path(checkpoint).write_text("old\n")
    attempts.begin(checkpoint, now=10.0)
    assert len(attempts.load(checkpoint)) == 1
    assert not attempts.log_path(checkpoint).exists()
