"""The PBS profile's submit/status/cancel logic (hpstudy.pbs), without a PBS server.

The qstat samples in tests/data/pbs/ are real ``qstat -x -f -F json`` answers of OpenPBS
(built from github.com/openpbs/openpbs), one per job state; see tests/data/pbs/README.md.
"""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from hpstudy import pbs

DATA = Path(__file__).parent / "data" / "pbs"
PROFILE = Path(__file__).parents[1] / "profiles" / "pbs"


def props(rule="train", threads=4, wildcards=None, **resources):
    return {
        "type": "single",
        "rule": rule,
        "local": False,
        "wildcards": wildcards if wildcards is not None else {"exp": "bs32-1a2b3c", "seed": "0"},
        "threads": threads,
        "resources": {"tmpdir": "/tmp", **resources},
        "jobid": 7,
    }


def qsub_line(p, site=None, jobscript="/w/.snakemake/tmp.x/snakejob.train.7.sh"):
    return pbs.build_qsub_args(
        p, site or pbs.Site(), jobscript, workdir="/w", stamp="T", submitted=1.7e9
    )


# --------------------------------------------------------------------------- qsub line


def test_qsub_line_gpu_training_job():
    site = pbs.Site(queue="workq", account="proj42", gpu_queue="gpuq", gpu_chunk="gpu_model=a100")
    args = qsub_line(props(mem_mb=16000, runtime=120, ngpus=1), site)
    assert args == [
        "qsub",
        "-N",
        "train.bs32-1a2b3c.0",
        "-l",
        "select=1:ncpus=4:mem=16000mb:ngpus=1:gpu_model=a100",
        "-l",
        "walltime=02:00:00",
        "-q",
        "gpuq",
        "-A",
        "proj42",
        "-j",
        "oe",
        "-o",
        "/w/logs/pbs/train/train.bs32-1a2b3c.0.T.out",
        "-V",
        "-v",
        "HPSTUDY_SUBMIT_TIME=1700000000,HPSTUDY_JOB_GPUS=1",
        "/w/.snakemake/tmp.x/snakejob.train.7.sh",
    ]


def test_qsub_line_cpu_job_uses_cpu_queue_and_no_gpu():
    site = pbs.Site(queue="workq", gpu_queue="gpuq", gpu_chunk="gpu_model=a100")
    args = qsub_line(props(rule="prepare", threads=1, wildcards={}, mem_mb=2000, runtime=30), site)
    assert args[:9] == [
        "qsub",
        "-N",
        "prepare",
        "-l",
        "select=1:ncpus=1:mem=2000mb",
        "-l",
        "walltime=00:30:00",
        "-q",
        "workq",
    ]
    assert "-A" not in args


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        (1, "00:01:00"),
        (90, "01:30:00"),
        (120 * 3, "06:00:00"),
        (2.5, "00:02:30"),
        (3000, "50:00:00"),
    ],
)
def test_walltime_from_runtime_minutes(runtime, expected):
    assert f"walltime={expected}" in qsub_line(props(runtime=runtime))


def test_runtime_scaled_by_attempt_in_profile_is_capped_by_site():
    site = pbs.Site(max_walltime_minutes=240)
    assert "walltime=04:00:00" in qsub_line(props(runtime=120 * 3), site)


def test_gpu_aliases_cpus_and_site_extras():
    site = pbs.Site(chunk="host=n01", extra_args=["-W", "group_list=abc"], export_env=False)
    args = qsub_line(props(threads=2, cpus=8, gpu=2, mem_mb=1000), site)
    assert "select=1:ncpus=8:mem=1000mb:ngpus=2:host=n01" in args
    assert args[-3:-1] == ["-W", "group_list=abc"] and "-V" not in args
    assert "walltime" not in " ".join(args)  # no runtime resource -> queue default walltime


def test_group_job_and_odd_wildcards_make_a_valid_pbs_name():
    group = {"type": "group", "groupid": "runs", "jobid": "1cf489ac-0611-5b76", "resources": {}}
    args = qsub_line(group)
    assert args[2] == "runs.1cf489ac" and "/w/logs/pbs/runs/runs.1cf489ac.T.out" in args
    odd = props(wildcards={"study": "quick", "exp": "lr=1e-3/bs 32"})
    assert qsub_line(odd)[2] == "train.quick.lr_1e-3_bs_32"
    assert pbs.job_name(props(rule="9x", wildcards={}))[0].isalpha()


def test_submit_reads_jobscript_registers_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobscript = tmp_path / "snakejob.train.7.sh"
    p = props(mem_mb=500, runtime=1, ngpus=1)
    jobscript.write_text(f"#!/bin/sh\n# properties = {json.dumps(p)}\necho hi\n")
    seen = []

    def fake_qsub(args, timeout=None):
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, "12.pbshost\n", "")

    jobid = pbs.submit(str(jobscript), pbs.Site(), run=fake_qsub)
    assert jobid == "12.pbshost"
    assert seen[0][-1] == str(jobscript) and "select=1:ncpus=4:mem=500mb:ngpus=1" in seen[0]
    record = json.loads((tmp_path / ".snakemake/pbs/jobs.jsonl").read_text())
    assert record["jobid"] == "12.pbshost" and record["rule"] == "train"
    assert Path(record["output"]).parent.is_dir()  # PBS cannot deliver into a missing folder
    assert record["invocation"] == tmp_path.name  # Snakemake's jobscript folder of this run
    assert record["attempts_log"] is None  # no checkpoint param: not a training job


def test_train_job_records_where_every_attempt_is_logged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobscript = tmp_path / "snakejob.train.7.sh"
    p = {**props(runtime=1), "params": {"checkpoint": "results/q/checkpoints/e/seed0.pt"}}
    jobscript.write_text(f"#!/bin/sh\n# properties = {json.dumps(p)}\n")

    def fake_qsub(args, timeout=None):
        return subprocess.CompletedProcess(args, 0, "13.pbshost\n", "")

    pbs.submit(str(jobscript), pbs.Site(), run=fake_qsub)
    record = json.loads((tmp_path / ".snakemake/pbs/jobs.jsonl").read_text())
    assert record["attempts_log"] == "results/q/checkpoints/e/seed0.attempts.log"


def test_submit_reports_rejection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobscript = tmp_path / "job.sh"
    jobscript.write_text(f"# properties = {json.dumps(props())}\n")

    def reject(args, timeout=None):
        return subprocess.CompletedProcess(args, 188, "", "qsub: Unknown queue\n")

    with pytest.raises(RuntimeError, match="Unknown queue"):
        pbs.submit(str(jobscript), pbs.Site(), run=reject)


def test_submit_waits_out_an_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobscript = tmp_path / "job.sh"
    jobscript.write_text(f"# properties = {json.dumps(props())}\n")
    answers = [(162, "", "Connection refused\nqsub: cannot connect to server pbshost")] * 4
    answers.append((0, "31.pbshost\n", ""))
    slept = []

    def flaky(args, timeout=None):
        return subprocess.CompletedProcess(args, *answers.pop(0))

    assert pbs.submit(str(jobscript), pbs.Site(), run=flaky, sleep=slept.append) == "31.pbshost"
    assert slept == [2, 4, 8, 16]

    answers[:] = [(162, "", "Connection refused")] * 50
    with pytest.raises(RuntimeError, match="Connection refused"):
        pbs.submit(str(jobscript), pbs.Site(qsub_retry_seconds=30), run=flaky, sleep=slept.append)


def test_site_file_in_profile_loads_and_rejects_typos(tmp_path):
    assert pbs.load_site(PROFILE / "site.yaml") == pbs.Site()
    bad = tmp_path / "site.yaml"
    bad.write_text("queu: gpu\n")
    with pytest.raises(ValueError, match="queu"):
        pbs.load_site(bad)


def test_profile_wires_the_scripts():
    config = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text())
    assert config["executor"] == "cluster-generic"
    for key in ("submit", "status", "cancel"):
        script = PROFILE / config[f"cluster-generic-{key}-cmd"]
        assert script.is_file() and script.stat().st_mode & 0o111
    # train walltime: the rule's estimate x factor x attempt (profiles/walltime.yaml), which
    # a runtime in the profile's set-resources would replace
    assert "runtime" not in config["set-resources"]["train"]
    rule = (PROFILE.parents[1] / "workflow/rules/train.smk").read_text()
    assert "runtime=train_runtime_minutes" in rule
    assert config["rerun-incomplete"] is True and config["retries"] >= 1


# --------------------------------------------------------------------------- status


def sample(name):
    return json.loads((DATA / name).read_text())


def only_job(name):
    (attrs,) = sample(name)["Jobs"].values()
    return attrs


SAMPLES = {
    # file: (job_state, expected status, words in the reason)
    "queued.json": ("Q", "running", "queued"),
    "held_user.json": ("H", "running", "held"),
    "waiting.json": ("W", "running", "start time"),
    "running.json": ("R", "running", "running"),
    "suspended.json": ("S", "running", "suspended"),
    "exiting.json": ("E", "running", "exiting"),
    "array_begun.json": ("B", "running", "subjob"),
    "held_system.json": ("H", "running", "by the system"),
    "subjob_finished.json": ("X", "success", "exit status 0"),
    "finished_ok.json": ("F", "success", "exit status 0"),
    "finished_exit1.json": ("F", "failed", "exited with status 1"),
    "finished_walltime.json": ("F", "failed", "walltime"),
    "finished_force_kill.json": ("F", "failed", "killed by signal 9"),
    "finished_deleted_queued.json": ("F", "failed", "deleted (qdel)"),
    # qdel of a running job: OpenPBS reports Exit_status 0, substate 91 (terminated)
    "finished_qdel_running.json": ("F", "failed", "deleted (qdel)"),
    "moved.json": ("M", "running", "moved"),
    "transit.json": ("T", "running", "moved"),
    "harvest_suspended.json": ("U", "running", "keyboard"),
    # constructed from queued.json: the scheduler's comment on a job no node can hold
    "never_run.json": ("Q", "failed", "Can Never Run: Insufficient amount of resource: ncpus"),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_state_sample_maps_to_one_status(name):
    state, expected, words = SAMPLES[name]
    attrs = only_job(name)
    assert attrs["job_state"] == state
    status, reason = pbs.classify(attrs)
    assert status == expected
    assert words in reason


def test_samples_cover_every_pbs_state():
    states = {only_job(name)["job_state"] for name in SAMPLES}
    assert states == set(pbs.JOB_STATES)


@pytest.mark.parametrize(
    ("code", "status", "words"),
    [
        (0, "success", "exit status 0"),
        (1, "failed", "exited with status 1"),
        (143, "failed", "SIGTERM"),
        (271, "failed", "killed by signal 15 (SIGTERM)"),
        (265, "failed", "killed by signal 9 (SIGKILL)"),
        (-29, "failed", "walltime"),
        (-27, "failed", "mem"),
        (-11, "failed", "rerun"),
        (-1, "failed", "could not be started"),
        (-99, "failed", "PBS could not run the job"),
    ],
)
def test_exit_status_mapping(code, status, words):
    got, reason = pbs.classify({"job_state": "F", "Exit_status": code})
    assert got == status and words in reason


def test_unknown_state_is_running_and_system_hold_is_explained():
    assert pbs.classify({"job_state": "Z"})[0] == "running"
    status, reason = pbs.classify({"job_state": "H", "Hold_Types": "s"})
    assert status == "running" and "system" in reason


class FakeQstat:
    """Answers ``qstat -E -x -f -F json`` like OpenPBS does; counts calls; can fail on demand."""

    def __init__(self, jobs, fail=0):
        self.jobs, self.fail, self.calls, self.deleted = jobs, fail, [], []

    def __call__(self, args, timeout=None):
        if args[0] == "qdel":
            self.deleted.extend(args[1:])
            return subprocess.CompletedProcess(args, 0, "", "")
        assert args[:6] == ["qstat", "-E", "-x", "-f", "-F", "json"]
        self.calls.append(args)
        head = {"timestamp": 1, "pbs_version": "23.06.06", "pbs_server": "pbshost"}
        if self.fail:
            self.fail -= 1
            err = "Communication failure.\nqstat: cannot connect to server pbshost (errno=15031)"
            return subprocess.CompletedProcess(args, 255, json.dumps(head), err)
        known = {j: a for j, a in self.jobs.items() if j in args[6:]}
        if known:  # with -E, unknown ids are silently left out
            return subprocess.CompletedProcess(args, 0, json.dumps({**head, "Jobs": known}), "")
        err = "".join(f"qstat: Unknown Job Id {j}\n" for j in args[6:])
        return subprocess.CompletedProcess(args, 153, json.dumps(head), err)


def register(state_dir, *jobids, invocation="tmp.run1"):
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "jobs.jsonl", "a") as fh:
        for j in jobids:
            rec = {"jobid": j, "name": f"train.{j}", "output": "o", "invocation": invocation}
            fh.write(json.dumps(rec) + "\n")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def board(tmp_path, qstat, clock, **site):
    site = pbs.Site(log_dir=str(tmp_path / "logs"), **site)
    return pbs.StatusBoard(site, tmp_path / "state", run=qstat, clock=clock, sleep=lambda s: None)


def test_one_batched_rate_limited_qstat_for_many_jobs(tmp_path):
    ids = [f"{i}.pbshost" for i in range(1, 151)]
    register(tmp_path / "state", *ids)
    running = only_job("running.json")
    qstat = FakeQstat({j: running for j in ids})
    clock = Clock()
    b = board(tmp_path, qstat, clock)
    assert all(b.status(j) == "running" for j in ids)
    assert len(qstat.calls) == 2  # 150 jobs in batches of 100, once per interval
    assert set(qstat.calls[0][6:]) | set(qstat.calls[1][6:]) == set(ids)
    clock.t += 11
    b.status(ids[0])
    assert len(qstat.calls) == 4


def test_failed_job_is_detected_and_its_reason_logged(tmp_path):
    register(tmp_path / "state", "5.pbshost", "6.pbshost")
    qstat = FakeQstat(
        {"5.pbshost": only_job("finished_walltime.json"), "6.pbshost": only_job("finished_ok.json")}
    )
    b = board(tmp_path, qstat, Clock())
    assert b.status("5.pbshost") == "failed"
    assert b.status("6.pbshost") == "success"
    log = (tmp_path / "logs" / "status.log").read_text()
    assert "5.pbshost" in log and "walltime" in log and "6.pbshost" not in log


def test_final_verdicts_are_kept_without_asking_again(tmp_path):
    register(tmp_path / "state", "5.pbshost")
    qstat = FakeQstat({"5.pbshost": only_job("finished_exit1.json")})
    clock = Clock()
    b = board(tmp_path, qstat, clock)
    assert b.status("5.pbshost") == "failed"
    clock.t += 100
    qstat.jobs = {}
    assert b.status("5.pbshost") == "failed"
    assert len(qstat.calls) == 1


def test_transient_qstat_failure_retries_then_reports_running(tmp_path):
    register(tmp_path / "state", "5.pbshost")
    qstat = FakeQstat({"5.pbshost": only_job("finished_ok.json")}, fail=2)
    clock = Clock()
    assert board(tmp_path, qstat, clock).status("5.pbshost") == "success"  # third try answers

    qstat = FakeQstat({"7.pbshost": only_job("finished_ok.json")}, fail=99)
    register(tmp_path / "state", "7.pbshost")
    clock.t += 100
    assert board(tmp_path, qstat, clock).status("7.pbshost") == "running"
    assert "cannot connect" in (tmp_path / "logs" / "status.log").read_text()


def test_job_forgotten_by_pbs_fails_after_repeated_unknowns(tmp_path):
    register(tmp_path / "state", "9.pbshost")
    qstat = FakeQstat({})
    clock = Clock()
    b = board(tmp_path, qstat, clock, unknown_job_limit=3)
    answers = []
    for _ in range(3):
        answers.append(b.status("9.pbshost"))
        clock.t += 11
    assert answers == ["running", "running", "failed"]
    assert "job_history_enable" in (tmp_path / "logs" / "status.log").read_text()


def test_real_batched_answer_and_unknown_ids():
    text = (DATA / "batched.json").read_text()

    def real(args, timeout=None):
        return subprocess.CompletedProcess(args, 0, text, "")

    ids = ["4.pbshost", "5.pbshost", "6.pbshost", "11.pbshost", "99.pbshost"]
    jobs, unknown = pbs.query_qstat(ids, run=real)
    assert set(jobs) == {"4", "5", "6", "11"} and unknown == {"99.pbshost"}
    verdicts = [pbs.classify(jobs[k])[0] for k in ("4", "5", "6", "11")]
    assert verdicts == ["success", "failed", "failed", "failed"]


def test_invalid_json_counts_as_transient(tmp_path):
    def broken(args, timeout=None):
        return subprocess.CompletedProcess(args, 0, '{"Jobs": {"1.h": {', "")

    with pytest.raises(pbs.QstatError, match="invalid JSON"):
        pbs.query_qstat(["1.h"], run=broken)


def test_status_main_never_crashes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no qstat at all
    monkeypatch.setenv(pbs.SITE_ENV, str(tmp_path / "site.yaml"))
    (tmp_path / "site.yaml").write_text("qstat_retries: 1\n")
    assert pbs.status_main(["3.pbshost"]) == 0
    assert capsys.readouterr().out.strip() == "running"


def test_cancel_calls_qdel_with_all_ids():
    seen = []

    def fake(args, timeout=None):
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    assert pbs.cancel_main(["1.h", "2.h"], run=fake) == 0
    assert seen == [["qdel", "1.h", "2.h"]]


def test_job_that_can_never_run_fails_at_once_and_is_deleted(tmp_path):
    """A packed job asking for more than any node has stays queued forever in PBS; the
    scheduler's "Can Never Run" comment makes it fail at the first look, logged and qdel'ed."""
    register(tmp_path / "state", "41.pbshost", "42.pbshost")
    qstat = FakeQstat(
        {"41.pbshost": only_job("never_run.json"), "42.pbshost": only_job("queued.json")}
    )
    b = board(tmp_path, qstat, Clock())
    assert b.status("41.pbshost") == "failed"
    assert b.status("42.pbshost") == "running"  # an ordinary queued job keeps waiting
    assert qstat.deleted == ["41.pbshost"]
    log = (tmp_path / "logs" / "status.log").read_text()
    assert "41.pbshost" in log and "(R: 4 A: 2 T: 2)" in log and "group-components" in log
    assert "42.pbshost" not in log


def test_not_running_now_is_not_never(tmp_path):
    attrs = {
        **only_job("queued.json"),
        "comment": "Not Running: Insufficient amount of resource: ncpus (R: 4 A: 0 T: 8)",
    }
    assert pbs.classify(attrs)[0] == "running"


def test_rerun_reports_only_its_own_jobs(tmp_path):
    """Jobs of an earlier invocation (qdel'ed by its Ctrl-C) are not reported by a rerun."""
    register(tmp_path / "state", "38.pbshost", "39.pbshost", invocation="tmp.old")
    register(tmp_path / "state", "50.pbshost", invocation="tmp.new")
    qstat = FakeQstat(
        {
            "38.pbshost": only_job("finished_qdel_running.json"),
            "39.pbshost": only_job("finished_deleted_queued.json"),
            "50.pbshost": only_job("running.json"),
        }
    )
    b = board(tmp_path, qstat, Clock())
    assert b.status("50.pbshost") == "running"
    assert qstat.calls[0][6:] == ["50.pbshost"]
    assert not (tmp_path / "logs" / "status.log").exists()
