"""The executor on a live PBS server (marked pbs): Snakemake's own executor test workflows,
memory after a memory failure, a job that can never run, Ctrl-C.

Skipped only where qsub is not on PATH; with qsub but no answering server they fail.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import snakemake.common.tests
from snakemake.settings import types as settings
from snakemake_executor_plugin_pbs import ExecutorSettings

pytestmark = [
    pytest.mark.pbs,
    pytest.mark.skipif(shutil.which("qsub") is None, reason="needs PBS (qsub on PATH)"),
]


class TestWorkflows(snakemake.common.tests.TestWorkflowsLocalStorageBase):
    """Snakemake's simple and group test workflows through the executor."""

    __test__ = True

    def get_executor(self) -> str:
        return "pbs"

    def get_executor_settings(self):
        return ExecutorSettings()

    def get_remote_execution_settings(self):
        return settings.RemoteExecutionSettings(seconds_between_status_checks=2)


SNAKEFILE = """
rule all:
    input: "oom.done", "error.done"

# exits 3 ("out of memory") on its first attempt, 1 (an error) for error.done
rule flaky:
    output: "{kind}.done"
    resources: mem_mb=100, runtime=2
    shell: "if [ -e {wildcards.kind}.tried ]; then touch {output}; "
           "else touch {wildcards.kind}.tried; "
           "if [ {wildcards.kind} = oom ]; then exit 3; else exit 1; fi; fi"

rule huge:
    output: "huge.done"
    threads: 512
    resources: mem_mb=100, runtime=2
    shell: "touch {output}"

rule sleepy:
    output: "sleepy.done"
    resources: mem_mb=100, runtime=10
    shell: "sleep 600; touch {output}"
"""


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """Snakemake on SNAKEFILE, to be run in workdir."""
    (workdir / "Snakefile").write_text(SNAKEFILE)
    return [
        sys.executable, "-m", "snakemake", "--executor", "pbs", "--jobs", "4",
        "--seconds-between-status-checks", "2", "--latency-wait", "5", *args,
    ]  # fmt: skip


def submitted(workdir: Path) -> list[dict]:
    path = workdir / ".snakemake" / "pbs" / "jobs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def qstat(jobid: str) -> dict:
    out = subprocess.run(["qstat", "-x", "-f", "-F", "json", jobid], capture_output=True, text=True)
    (attrs,) = json.loads(out.stdout, strict=False)["Jobs"].values()
    return attrs


def test_memory_grows_after_a_memory_failure_only(tmp_path):
    cmd = snakemake_cmd(tmp_path, "--retries", "1", "--pbs-memory-exit-codes", "3")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    asked = {}
    for job in submitted(tmp_path):
        asked.setdefault(job["wildcards"]["kind"], []).append(qstat(job["jobid"])["Resource_List"])
    assert [r["mem"] for r in asked["oom"]] == ["100mb", "200mb"]  # exit 3: twice the memory
    assert [r["mem"] for r in asked["error"]] == ["100mb", "100mb"]  # exit 1: the same
    assert "its rule's command exited with status 3 (out of memory)" in proc.stderr
    assert "the retry asks for mem=200mb" in proc.stderr


def test_job_that_can_never_run_fails_once_and_is_deleted(tmp_path):
    cmd = snakemake_cmd(tmp_path, "huge.done", "--retries", "2")
    start = time.time()
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and time.time() - start < 120
    (job,) = submitted(tmp_path)  # not resubmitted despite --retries 2
    assert "Can Never Run: Insufficient amount of resource: ncpus" in proc.stderr
    attrs = qstat(job["jobid"])
    assert attrs["job_state"] == "F" and "Exit_status" not in attrs  # deleted before it ran


def test_ctrl_c_deletes_the_running_jobs(tmp_path):
    cmd = snakemake_cmd(tmp_path, "sleepy.done")
    # SIGINT's default in the child: a CI run started in the background ignores SIGINT, and
    # Snakemake would inherit that and never see the Ctrl-C sent here
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 120
        registry = tmp_path / ".snakemake" / "pbs" / "jobs.jsonl"
        while time.time() < deadline and not registry.is_file():
            time.sleep(1)
        (job,) = submitted(tmp_path)
        while time.time() < deadline and qstat(job["jobid"])["job_state"] != "R":
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Cancelled 1 PBS jobs with 1 qdel call(s)" in err, err[-3000:]
    for _ in range(30):
        attrs = qstat(job["jobid"])
        if attrs["job_state"] == "F":
            break
        time.sleep(1)
    assert (attrs["job_state"], attrs["substate"]) == ("F", 91)  # terminated by qdel
