"""The workflow through ``profiles/pbs`` against a live PBS server (skipped without ``qsub``).

Runs in a temporary copy of the workflow (its own results/ and reports/), with the sizes of
a small test node: 1 cpu, 1.5 GB and 1 GPU per training job (the server needs an ``ngpus``
resource; see docs/pbs.md for the one-node OpenPBS used here).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml


def _server_up() -> bool:
    """qsub on PATH and a server that answers (a stopped server must skip, not fail)."""
    if shutil.which("qsub") is None or shutil.which("qstat") is None:
        return False
    try:
        return subprocess.run(["qstat", "-B"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


pytestmark = [
    pytest.mark.pbs,
    pytest.mark.slow,
    pytest.mark.skipif(not _server_up(), reason="needs a live PBS server (qsub on PATH)"),
]

REPO = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data" / "pbs"
SIZES = ["--set-threads", "train=1"]


def resources(runtime="10"):
    return [
        "--default-resources",
        "mem_mb=1000",
        "runtime=10",
        "--set-resources",
        "train:mem_mb=1500",
        f"train:runtime={runtime}",
        "train:ngpus=1",
    ]


@pytest.fixture
def workdir(tmp_path):
    """A copy of the workflow whose results and reports stay in tmp_path."""
    for name in ("Snakefile", "workflow", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    studies = tmp_path / "config" / "studies"
    studies.mkdir(parents=True)
    for study in ("pbs_tiny", "pbs_long"):
        shutil.copy(DATA / f"{study}.yaml", studies / f"{study}.yaml")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        results_dir="results",
        reports_dir="reports",
        synthetic={"n_images": 200, "image_size": 64, "seed": 0},
    )
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def snakemake(workdir, study, *extra, check=True):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("HPSTUDY_PBS_SITE", None)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/pbs",
        "--config",
        f"study={study}",
        "--jobs",
        "4",
        "--local-cores",
        "1",
        "--seconds-between-status-checks",
        "5",
        *SIZES,
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)
    (workdir / f"snakemake-{study}.log").write_text(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc


def pbs_jobs(workdir):
    lines = (workdir / ".snakemake/pbs/jobs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def qstat(jobid):
    out = subprocess.run(["qstat", "-x", "-f", "-F", "json", jobid], capture_output=True, text=True)
    (attrs,) = json.loads(out.stdout)["Jobs"].values()
    return attrs


def test_tiny_study_runs_through_pbs(workdir):
    snakemake(workdir, "pbs_tiny", *resources())

    assert (workdir / "reports" / "pbs_tiny" / "report.html").is_file()
    metrics = sorted((workdir / "results" / "pbs_tiny" / "runs").glob("*/seed*/metrics.json"))
    assert len(metrics) == 4  # 2 experiments x 2 seeds

    jobs = pbs_jobs(workdir)
    rules = sorted(job["rule"] for job in jobs)
    assert rules.count("train") == 4  # one PBS job per training run
    assert not {"experiments", "extract", "aggregate", "report"} & set(rules)  # local rules
    for job in jobs:
        attrs = qstat(job["jobid"])
        assert (attrs["job_state"], attrs["Exit_status"]) == ("F", 0), job
        if job["rule"] == "train":
            select = attrs["Resource_List"]["select"]
            assert select == "1:ncpus=1:mem=1500mb:ngpus=1", select
            assert attrs["Resource_List"]["walltime"] == "00:10:00"
        assert Path(job["output"]).is_file()  # PBS delivered the job's output (-j oe)


def test_walltime_kill_resumes_from_checkpoint(workdir):
    """runtime = 1 minute x attempt: attempt 1 is killed at walltime, the retry resumes."""
    snakemake(workdir, "pbs_long", *resources(runtime="attempt"), "--retries", "3")

    train = [job for job in pbs_jobs(workdir) if job["rule"] == "train"]
    verdicts = [(qstat(job["jobid"]).get("Exit_status"), job["jobid"]) for job in train]
    assert verdicts[0][0] == -29, verdicts  # JOB_EXEC_KILL_WALLTIME
    assert verdicts[-1][0] == 0, verdicts
    walltimes = [qstat(job["jobid"])["Resource_List"]["walltime"] for job in train]
    assert walltimes[:2] == ["00:01:00", "00:02:00"]  # runtime scales with attempt

    status_log = (workdir / "logs" / "pbs" / "status.log").read_text()
    assert "JOB_EXEC_KILL_WALLTIME" in status_log and verdicts[0][1] in status_log

    (log,) = (workdir / "results" / "logs" / "train" / "pbs_long").glob("*/seed0.log")
    assert "resumed from" in log.read_text()
    (path,) = (workdir / "results" / "pbs_long" / "runs").glob("*/seed0/metrics.json")
    metrics = json.loads(path.read_text())
    assert metrics["resumed_at"] and metrics["epochs_run"] == 120

    # every attempt's training log and record are kept, and the status line points to them
    (kept,) = (workdir / "results" / "pbs_long" / "checkpoints").glob("*/seed0.attempts.log")
    text = kept.read_text()
    assert text.count("=== attempt ") >= 2 * len(train) - 1
    assert "epoch 1/120" in text and "interrupted by a signal" in text
    record = json.loads(kept.with_name("seed0.attempts.json").read_text())
    assert [r["job_id"].split(".")[0] for r in record] == [j["jobid"].split(".")[0] for j in train]
    assert metrics["attempts"] == len(train)
    assert metrics["wall_time_s"] > metrics["wall_time_last_attempt_s"]
    assert str(kept) in status_log


def _largest_node_cpus() -> int:
    out = subprocess.run(["pbsnodes", "-a", "-F", "json"], capture_output=True, text=True)
    nodes = json.loads(out.stdout)["nodes"].values()
    return max(int(n["resources_available"]["ncpus"]) for n in nodes)


def test_packed_run_fits_the_node(workdir):
    """--groups train=runs --group-components runs=2: 4 runs in 2 PBS jobs, each holding
    2 runs' resources (1 cpu, 1.5 GB, 1 GPU each), named runs.<group id>."""
    snakemake(
        workdir, "pbs_tiny", *resources(), "--groups", "train=runs", "--group-components", "runs=2"
    )
    metrics = sorted((workdir / "results" / "pbs_tiny" / "runs").glob("*/seed*/metrics.json"))
    assert len(metrics) == 4
    groups = [job for job in pbs_jobs(workdir) if job["rule"] == "runs"]
    assert len(groups) == 2 and all(job["name"].startswith("runs.") for job in groups)
    for job in groups:
        attrs = qstat(job["jobid"])
        assert (attrs["job_state"], attrs["Exit_status"]) == ("F", 0), job
        assert attrs["Resource_List"]["select"] == "1:ncpus=2:mem=3000mb:ngpus=2"


def test_packed_job_that_can_never_run_fails_at_once(workdir):
    """Two runs of a node's every CPU each in one job: PBS comments "Can Never Run" and the
    workflow fails that job at once with the reason instead of waiting forever."""
    cpus = _largest_node_cpus()
    start = time.time()
    proc = snakemake(
        workdir,
        "pbs_tiny",
        *resources(),
        "--set-threads",
        f"train={cpus}",
        "--groups",
        "train=runs",
        "--group-components",
        "runs=2",
        check=False,
    )
    assert proc.returncode != 0
    assert time.time() - start < 600
    status_log = (workdir / "logs" / "pbs" / "status.log").read_text()
    assert "Can Never Run" in status_log and "ncpus" in status_log
    for job in (j for j in pbs_jobs(workdir) if j["rule"] == "runs"):
        assert qstat(job["jobid"])["job_state"] == "F"  # qdel'ed, not left in the queue


def test_ctrl_c_cancels_pbs_jobs(workdir):
    """SIGINT to Snakemake (Ctrl-C) qdels the running training job through cancel.py."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/pbs"]
    cmd += ["--config", "study=pbs_long", "--local-cores", "1", *SIZES, *resources()]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 600
        train = None
        while time.time() < deadline and train is None:
            time.sleep(5)
            registry = workdir / ".snakemake/pbs/jobs.jsonl"
            jobs = pbs_jobs(workdir) if registry.is_file() else []
            train = next((job for job in jobs if job["rule"] == "train"), None)
        assert train, "no training job was submitted"
        while qstat(train["jobid"])["job_state"] != "R" and time.time() < deadline:
            time.sleep(2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    for _ in range(30):
        attrs = qstat(train["jobid"])
        if attrs["job_state"] == "F":
            break
        time.sleep(2)
    assert (attrs["job_state"], attrs["substate"]) == ("F", 91)  # terminated by qdel
