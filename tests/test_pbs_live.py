"""The workflow through profiles/pbs and its executor plugin on a live PBS server.

`.ci/run` starts a one-node OpenPBS 23.06.06 (../shared/pbs/pbs-up.sh: 2 CPUs, ngpus = 2 as a
custom resource) and sets HPSTUDY_REQUIRE_PBS=1: without a server these tests then fail;
elsewhere they skip. One work folder serves the module: its generated dataset (200 images,
64 px, resized to 32) is made and prepared through PBS by whichever test runs first and
shared by the studies of the others (tests/data/pbs/*.yaml). Job sizes of the test node:
1 CPU, 1.5 GB and 1 GPU per train job; everything else is the profile as users run it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake, snakemake_cmd, write_workdir

from hpstudy.study import load_study

pytestmark = [pytest.mark.pbs, pytest.mark.slow]

DATA = Path(__file__).parent / "data" / "pbs"
REQUIRE = os.environ.get("HPSTUDY_REQUIRE_PBS") == "1"  # CI: a missing server is a failure
SIZES = ["--set-threads", "train=1", "train_round=1"]
RUN = ["--default-resources", "mem_mb=1000", "runtime=10", "--local-cores", "1"]
RUN += ["--seconds-between-status-checks", "5"]
# history.csv columns that depend on the machine's speed, not on the training
TIMING = {"epoch_time_s", "data_time_s", "samples_per_s"}


def resources(runtime: str | None = None) -> list[str]:
    """--set-resources replaces the profile's whole set-resources: every key again."""
    res = ["train:mem_mb=1500", "train:ngpus=1", "train_round:mem_mb=1500", "train_round:ngpus=1"]
    return ["--set-resources", *res, *([f"train:runtime={runtime}"] if runtime else [])]


def why_no_server() -> str | None:
    if shutil.which("qsub") is None or shutil.which("qstat") is None:
        return "qsub/qstat not on PATH (export PATH=/opt/pbs/bin:$PATH)"
    try:
        proc = subprocess.run(["qstat", "-B"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return f"qstat -B failed: {err}"
    return None if proc.returncode == 0 else f"qstat -B: {proc.stderr.strip()}"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    reason = why_no_server()
    if reason:
        (pytest.fail if REQUIRE else pytest.skip)(f"needs a live PBS server: {reason}")
    work = tmp_path_factory.mktemp("pbs")
    write_workdir(
        work,
        (DATA / "pbs_tiny.yaml").read_text(),
        study="pbs_tiny",
        synthetic={"n_images": 200, "image_size": 64, "seed": 0},
        tensorboard=False,
    )
    studies = {path.stem: yaml.safe_load(path.read_text()) for path in DATA.glob("*.yaml")}
    # variants under their own names: their runs must not be the finished ones of another test
    studies["pbs_never"] = studies["pbs_tiny"] | {"name": "pbs_never"}
    studies["pbs_ctrlc"] = studies["pbs_long"] | {"name": "pbs_ctrlc"}
    studies["pbs_ctrlc"]["base"] = studies["pbs_long"]["base"] | {"epochs": 5000, "patience": 5000}
    for name, study in studies.items():
        (work / "studies" / f"{name}.yaml").write_text(yaml.safe_dump(study))
    return work


def pbs_args(study: str, *extra: str, targets: tuple[str, ...] = ()) -> list[str]:
    # targets right after --profile (one value): options with several values would take them
    profile = ["--profile", "profiles/pbs", *targets]
    return [*profile, "--config", f"study={study}", *SIZES, *RUN, *extra]


def snakemake(work: Path, study: str, *extra: str, check=True, timeout=900):
    proc = run_snakemake(work, *pbs_args(study, *extra), check=False, timeout=timeout)
    (work / f"snakemake-{study}.log").write_text(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc


def popen_snakemake(work: Path, study: str, *extra: str, targets=()) -> subprocess.Popen:
    cmd = snakemake_cmd(
        "--directory", str(work), "--configfile", str(work / "config.yaml"),
        *pbs_args(study, *extra, targets=targets),
    )  # fmt: skip
    with open(work / f"snakemake-{study}.log", "w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, preexec_fn=default_sigint
        )


def default_sigint() -> None:
    """Ctrl-C's default in the child: a CI run started in the background (`cmd &`, nohup)
    ignores SIGINT, every process below it inherits that, and Snakemake would never see the
    Ctrl-C that the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pbs_jobs(work: Path, since: float = 0.0) -> list[dict]:
    """The plugin's record of every qsub (.snakemake/pbs/jobs.jsonl) since a time."""
    path = work / ".snakemake" / "pbs" / "jobs.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [rec for rec in map(json.loads, lines) if rec["submitted"] >= since]


def qstat(jobid: str) -> dict:
    proc = subprocess.run(
        ["qstat", "-x", "-f", "-F", "json", jobid], capture_output=True, text=True, check=True
    )
    (attrs,) = json.loads(proc.stdout, strict=False)["Jobs"].values()
    return attrs


def wait_for(predicate, timeout: float, what: str, step: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def attempt_records(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def test_tiny_study_runs_through_the_profile(work):
    """generate_microbeads, prepare and one train job per configuration are PBS jobs, each
    ending with Exit_status 0; the bookkeeping rules run locally; the report is written;
    every attempt knows its PBS job and when it was submitted (queue wait)."""
    start = time.time()
    proc = snakemake(work, "pbs_tiny", *resources())
    log = proc.stdout + proc.stderr

    assert (work / "reports" / "pbs_tiny" / "report.html").is_file()
    metrics = sorted((work / "results" / "pbs_tiny" / "checkpoints").glob("*/seed*/metrics.json"))
    assert len(metrics) == 4  # 2 configurations x 2 seeds

    jobs = pbs_jobs(work, start)
    rules = sorted(job["rule"] for job in jobs)
    assert rules.count("train") == 2, rules  # one job per configuration, both seeds in it
    assert set(rules) <= {"generate_microbeads", "prepare", "train"}, rules  # the rest is local
    submitted = re.findall(r"has been submitted with PBS jobid (\S+) ", log)
    assert len(submitted) == len(re.findall(r"^rule \w+:", log, re.M)) == len(jobs)
    assert not re.search(r"^localrule train:", log, re.M)
    for job in jobs:
        attrs = qstat(job["jobid"])
        assert (attrs["job_state"], attrs["Exit_status"]) == ("F", 0), job
        assert Path(job["output"]).is_file(), job  # PBS delivered the job's output (-j oe)
        if job["rule"] == "train":
            assert attrs["Resource_List"]["select"] == "1:ncpus=1:mem=1500mb:ngpus=1"
    train_ids = {job["jobid"]: job for job in jobs if job["rule"] == "train"}
    for record in (work / "results" / "pbs_tiny" / "checkpoints").glob("*/seed*.attempts.json"):
        (attempt,) = attempt_records(record)
        job = train_ids[attempt["job_id"]]
        assert abs(attempt["submitted"] - job["submitted"]) <= 1  # HPSTUDY_SUBMIT_TIME
        assert attempt["start"] >= attempt["submitted"]


def test_sequential_study_round_2_trains_only_the_new_seeds(work):
    """seeds {initial: 2, max: 3, step: 1}: round 1 trains 2 seeds of every configuration,
    round 2 one more seed of the open contrast's configurations and nothing else, all
    through PBS, to the report."""
    start = time.time()
    snakemake(work, "pbs_seq", *resources())
    assert (work / "reports" / "pbs_seq" / "report.html").is_file()

    jobs = [job for job in pbs_jobs(work, start) if job["rule"] == "train_round"]
    rounds: dict[str, dict[str, str]] = {}  # round -> cfg -> PBS job id
    for job in jobs:
        assert qstat(job["jobid"])["Exit_status"] == 0, job
        rounds.setdefault(job["wildcards"]["k"], {})[job["wildcards"]["cfg"]] = job["jobid"]
    study = load_study(work / "studies" / "pbs_seq.yaml")
    assert set(rounds["1"]) == set(study.configs()), rounds  # every configuration, once
    assert rounds.get("2"), f"no round 2: {rounds}"
    assert set(rounds) == {"1", "2"} and len(rounds["2"]) < len(rounds["1"])
    keep = work / "results" / "pbs_seq" / "checkpoints"
    for cfg, round2_job in rounds["2"].items():
        owner = {}
        for seed in (0, 1, 2):
            (attempt,) = attempt_records(keep / cfg / f"seed{seed}.attempts.json")
            owner[seed] = attempt["job_id"]
        # the round-1 seeds were trained once, by round 1's job; round 2 trained seed 2 only
        assert owner == {0: rounds["1"][cfg], 1: rounds["1"][cfg], 2: round2_job}


def reference_run(work: Path, study: str, out: Path) -> subprocess.Popen:
    """The same run uninterrupted, by the same train script with one thread, beside PBS."""
    (exps,) = load_study(work / "studies" / f"{study}.yaml").configs().values()
    cfg = exps[0].config.to_dict()
    cfg.pop("seed")
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump({**cfg, "seeds": [0]}))
    (prepared,) = (work / "results" / "prepared").glob("*/prepared.pt")
    script = REPO / "workflow" / "scripts" / "train.py"
    args = [str(out / "config.yaml"), str(prepared), str(out / "runs"), str(out / "keep"), "1"]
    with open(out / "train.log", "w") as log:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, str(script), *args], stdout=log, stderr=log)


def history(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


# the walltime test's train:runtime in minutes: 1 for the attempt PBS kills, then 10, so the
# retry finishes on a slow machine and the first attempt is killed on a fast one
RETRY_RUNTIME = "10 ** (attempt - 1)"


def test_walltime_kill_resumes_bit_identically_and_names_every_attempt_log(work):
    """runtime = 1 minute for attempt 1 and 10 for the retry, on a run of 100-170 s of
    training (500 epochs at 0.2-0.33 s each on one core of the 2-core VMs): PBS kills attempt
    1 at walltime (Exit_status -29) whatever the machine's speed, the retry asks for 10
    minutes and the same memory, resumes from the checkpoint and ends with the history and
    metrics of an uninterrupted run. The console names the training log of every attempt."""
    start = time.time()
    (cfg,) = load_study(work / "studies" / "pbs_long.yaml").configs()
    target = str(work / "results" / "pbs_long" / "runs" / cfg)  # the training, not the report
    proc = popen_snakemake(work, "pbs_long", *resources(runtime=RETRY_RUNTIME), targets=(target,))
    reference = None
    try:
        # the reference starts once the prepared dataset exists (the first train job is queued)
        wait_for(
            lambda: any(j["rule"] == "train" for j in pbs_jobs(work, start)), 600, "a train job"
        )
        reference = reference_run(work, "pbs_long", work / "reference")
        assert proc.wait(timeout=1200) == 0, (work / "snakemake-pbs_long.log").read_text()[-6000:]
        assert reference.wait(timeout=600) == 0, (work / "reference" / "train.log").read_text()
    finally:
        for child in (proc, reference):
            if child is not None and child.poll() is None:
                child.kill()
    log = (work / "snakemake-pbs_long.log").read_text()

    train = [job for job in pbs_jobs(work, start) if job["rule"] == "train"]
    exits = [qstat(job["jobid"]).get("Exit_status") for job in train]
    # killed at walltime, then finished (a machine that trains 500 epochs in under a minute
    # needs more of them in tests/data/pbs/pbs_long.yaml)
    assert exits[0] == -29 and exits[-1] == 0, exits
    assert set(exits[:-1]) == {-29}, exits
    limits = [qstat(job["jobid"])["Resource_List"] for job in train]
    minutes = [10 ** (n - 1) for n in range(1, len(train) + 1)]  # RETRY_RUNTIME
    assert [r["walltime"] for r in limits] == [f"{m // 60:02d}:{m % 60:02d}:00" for m in minutes]
    assert {r["mem"] for r in limits} == {"1500mb"}  # a walltime retry keeps the memory

    cfg_dir = work / "results" / "pbs_long" / "checkpoints" / cfg
    kept = cfg_dir / "seed0.attempts.log"
    # the failure on the console: PBS's reason, the job's output and every attempt's log
    assert "JOB_EXEC_KILL_WALLTIME" in log and train[0]["jobid"] in log
    assert re.search(rf"message: .*logs of every attempt: {re.escape(str(kept))}", log), log
    assert f"Logfile {kept}:" not in log  # named, not printed whole by show-failed-logs
    status_log = (work / "logs" / "pbs" / "status.log").read_text()
    assert train[0]["jobid"] in status_log and str(kept) in status_log

    text = kept.read_text()
    assert text.count("=== attempt ") == 2 * len(train)  # a start and an end line each
    assert "interrupted by a signal" in text
    record = attempt_records(cfg_dir / "seed0.attempts.json")
    assert [r["job_id"] for r in record] == [job["jobid"] for job in train]

    run = cfg_dir / "seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = yaml.safe_load((work / "studies" / "pbs_long.yaml").read_text())["base"]["epochs"]
    assert metrics["resumed_at"] and metrics["epochs_run"] == epochs
    reference_dir = work / "reference" / "keep" / "seed0"
    assert history(run / "history.csv") == history(reference_dir / "history.csv")
    expected = json.loads((reference_dir / "metrics.json").read_text())
    for key in ("test_r2", "test_mse", "best_epoch", "best_val_loss", "optimizer_steps"):
        assert metrics[key] == expected[key], key


def test_packed_job_that_can_never_run_fails_at_once_and_is_not_retried(work):
    """Two 2-CPU train jobs packed into one PBS job on a 2-CPU node: the scheduler comments
    "Can Never Run"; the job is deleted and fails at once, and the profile's retries: 2 do
    not submit it again."""
    start = time.time()
    proc = snakemake(
        work,
        "pbs_never",
        *resources(),
        "--set-threads", "train=2",
        "--groups", "train=runs",
        "--group-components", "runs=2",
        check=False,
    )  # fmt: skip
    took = time.time() - start
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    groups = [job for job in pbs_jobs(work, start) if job["rule"] == "runs"]
    assert len(groups) == 1, groups  # submitted once: not retried
    assert "Can Never Run: Insufficient amount of resource: ncpus (R: 4" in log
    assert "Trying to restart job" not in log
    attrs = qstat(groups[0]["jobid"])
    assert attrs["job_state"] == "F" and "Exit_status" not in attrs  # deleted, never ran
    assert took < 180, took  # the whole run, data preparation included when it ran first


def test_ctrl_c_deletes_the_running_job_which_saves_a_checkpoint(work):
    """SIGINT to Snakemake while a train job runs: one batched qdel; PBS terminates the job
    (substate 91) with SIGTERM first, so the training saves a checkpoint for a rerun."""
    start = time.time()
    proc = popen_snakemake(work, "pbs_ctrlc", *resources())
    try:
        train = wait_for(
            lambda: next((j for j in pbs_jobs(work, start) if j["rule"] == "train"), None),
            600,
            "the train job's qsub",
        )
        logs = work / "results" / "pbs_ctrlc" / "checkpoints"
        wait_for(
            lambda: any("epoch 2/" in p.read_text() for p in logs.glob("*/seed0.attempts.log")),
            300,
            "the second epoch",
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (work / "snakemake-pbs_ctrlc.log").read_text()
    assert "Cancelled 1 PBS jobs with 1 qdel call(s)" in log, log[-3000:]
    attrs = wait_for(
        lambda: (a := qstat(train["jobid"]))["job_state"] == "F" and a, 60, "the job to end"
    )
    assert attrs["substate"] == 91  # terminated by qdel
    (record,) = attempt_records(next(logs.glob("*/seed0.attempts.json")))
    assert "interrupted" in record["ended"], record  # SIGTERM: checkpoint saved
    assert next(logs.glob("*/seed0.pt")).is_file()
