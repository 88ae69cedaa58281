"""Job status from real ``qstat -x -f -F json`` answers of OpenPBS 23.06.06 (tests/data/)."""

import json
import subprocess
from pathlib import Path

import pytest
from snakemake_executor_plugin_pbs import status
from snakemake_executor_plugin_pbs.failure import rule_exit_status

DATA = Path(__file__).parent / "data"


def sample(name: str) -> dict:
    data = json.loads((DATA / f"{name}.json").read_text(), strict=False)
    (attrs,) = data["Jobs"].values()
    return attrs


@pytest.mark.parametrize(
    ("name", "verdict", "words"),
    [
        ("queued", "running", "job_state Q: queued"),
        ("running", "running", "job_state R: running"),
        ("held_user", "running", "job_state H: held"),
        ("held_system", "running", "by the system"),
        ("waiting", "running", "job_state W"),
        ("suspended", "running", "job_state S"),
        ("exiting", "running", "job_state E"),
        ("array_begun", "running", "job_state B"),
        ("moved", "running", "job_state M"),
        ("transit", "running", "job_state T"),
        ("harvest_suspended", "running", "job_state U"),
        ("finished_ok", "success", "Exit_status 0"),
        ("subjob_finished", "success", "Exit_status 0"),
        ("finished_exit1", "failed", "the job script exited with status 1"),
        ("finished_walltime", "failed", "JOB_EXEC_KILL_WALLTIME"),
        ("finished_signal_kill", "failed", "killed by signal 9 (SIGKILL)"),
        ("finished_signal_segv", "failed", "killed by signal 11 (SIGSEGV)"),
        ("finished_force_kill", "failed", "deleted (qdel) before it finished"),
        ("finished_qdel_running", "failed", "deleted (qdel) before it finished"),
        ("finished_deleted_queued", "failed", "deleted (qdel) before it finished"),
        ("never_run", "failed", "Can Never Run: Insufficient amount of resource: ncpus"),
    ],
)
def test_every_captured_job_state_maps_to_one_verdict(name, verdict, words):
    got = status.classify(sample(name))
    assert got.status == verdict, got
    assert words in got.reason, got.reason


def test_walltime_kill_and_never_run_are_told_apart():
    walltime = status.classify(sample("finished_walltime"))
    assert walltime.exit_status == -29 and walltime.walltime_killed
    assert not walltime.never_run and not walltime.memory_killed
    never = status.classify(sample("never_run"))
    assert never.never_run and "is not retried" in never.reason
    queued = status.classify(sample("queued"))  # "Not Running: ..." is an ordinary wait
    assert queued.status == "running" and not queued.never_run


def test_qdel_of_a_running_job_fails_although_pbs_says_exit_status_0():
    attrs = sample("finished_qdel_running")
    assert attrs["Exit_status"] == 0 and attrs["substate"] == status.SUBSTATE_TERMINATED
    assert status.classify(attrs).status == "failed"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "Exit_status 0"),
        (2, "exited with status 2"),
        (137, "killed by signal 9 (SIGKILL)"),
        (271, "killed by signal 15 (SIGTERM)"),
        (-27, "JOB_EXEC_KILL_MEM"),
        (-1, "could not be started"),
        (-99, "PBS could not run the job or killed it"),
    ],
)
def test_exit_status_in_words(code, words):
    assert words in status.describe_exit_status(code)


def test_unknown_job_state_counts_as_running():
    assert status.classify({"job_state": "Z"}).status == "running"


def qstat_answering(*answers):
    """A qstat that prints the given (returncode, stdout, stderr) answers in turn."""
    calls = []

    def runner(args, timeout=None):
        calls.append(args)
        rc, out, err = answers[min(len(calls), len(answers)) - 1]
        return subprocess.CompletedProcess(args, rc, out, err)

    return runner, calls


def test_one_batched_call_answers_every_job():
    runner, calls = qstat_answering((0, (DATA / "batched.json").read_text(), ""))
    ids = ["4.vm", "5.vm", "6.vm", "7.vm"]  # finished 0, exit 1, walltime, never-run deleted
    jobs, unknown = status.query(ids, runner)
    assert len(calls) == 1 and calls[0][:6] == ["qstat", "-E", "-x", "-f", "-F", "json"]
    assert calls[0][6:] == ids
    assert {k: status.classify(a).status for k, a in jobs.items()} == {
        "4": "success",
        "5": "failed",
        "6": "failed",
        "7": "failed",
    }
    assert not unknown


def test_many_jobs_are_asked_in_batches_and_missing_ones_are_unknown():
    runner, calls = qstat_answering((153, '{"Jobs": {}}', "qstat: Unknown Job Id 7.vm\n"))
    ids = [f"{i}.vm" for i in range(1200)]
    jobs, unknown = status.query(ids, runner)
    assert len(calls) == 3 and not jobs and unknown == set(ids)


@pytest.mark.parametrize(
    "answer",
    [
        (2, "", "Connection refused\nqstat: cannot connect to server vm (errno=111)"),
        (0, "{not json", ""),
    ],
)
def test_a_broken_answer_is_an_error_not_a_verdict(answer):
    runner, _ = qstat_answering(answer)
    with pytest.raises(status.QstatError):
        status.query(["1.vm"], runner)


def test_short_ids():
    assert status.short_id("123.server.domain") == "123" and status.short_id("45[].vm") == "45[]"


def test_rule_exit_status_is_read_from_the_job_output(tmp_path):
    """The PBS output of a real job whose rule ran `exit 3`: the job's Exit_status is 1 (the
    Snakemake inside it), the rule's 3 is only in the output."""
    assert rule_exit_status(DATA / "job_output_rule_exit3.out") == 3
    assert rule_exit_status(tmp_path / "missing.out") is None
    (tmp_path / "walltime.out").write_text("epoch 3\n=>> PBS: job killed: walltime 70 exceeded")
    assert rule_exit_status(tmp_path / "walltime.out") is None
