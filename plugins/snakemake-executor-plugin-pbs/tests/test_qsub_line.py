"""The qsub line, qsub's retries, batched qdel and the failure logs, without a PBS server."""

import subprocess
from pathlib import Path

import pytest
from snakemake_executor_plugin_pbs.cancel import qdel
from snakemake_executor_plugin_pbs.failure import expand_pattern, failure_logs
from snakemake_executor_plugin_pbs.settings import ExecutorSettings, memory_exit_codes
from snakemake_executor_plugin_pbs.submit import (
    JobRequest,
    SubmitError,
    output_path,
    qsub,
    qsub_command,
    walltime,
)
from snakemake_interface_common.exceptions import WorkflowError


def train(**resources) -> JobRequest:
    return JobRequest(
        rule="train",
        wildcards={"study": "quick", "cfg": "1a2b3c"},
        threads=4,
        resources={"tmpdir": "/tmp", **resources},
    )


def line(request, settings=None, **kwargs) -> list[str]:
    kwargs.setdefault("submitted", 1.7e9)
    return qsub_command(
        request, settings or ExecutorSettings(), "/w/job.sh", Path("/w/o.out"), **kwargs
    )


def test_gpu_training_job_with_every_site_setting():
    settings = ExecutorSettings(
        queue="workq",
        gpu_queue="gpuq",
        account="acct42",
        project="proj7",
        gpu_chunk="gpu_model=a100",
        extra_args="-W group_list=proj7 -m a",
        submit_time_var="HPSTUDY_SUBMIT_TIME",
        gpus_var="HPSTUDY_JOB_GPUS",
    )
    args = line(train(mem_mb=16000, runtime=120, ngpus=1), settings)
    assert args == [
        "qsub",
        "-N",
        "train.quick.1a2b3c",
        "-l",
        "select=1:ncpus=4:mem=16000mb:ngpus=1:gpu_model=a100",
        "-l",
        "walltime=02:00:00",
        "-q",
        "gpuq",
        "-A",
        "acct42",
        "-P",
        "proj7",
        "-j",
        "oe",
        "-o",
        "/w/o.out",
        "-V",
        "-v",
        "HPSTUDY_SUBMIT_TIME=1700000000,HPSTUDY_JOB_GPUS=1",
        "-W",
        "group_list=proj7",
        "-m",
        "a",
        "/w/job.sh",
    ]


def test_cpu_job_takes_the_cpu_queue_and_no_gpu_flavour():
    settings = ExecutorSettings(queue="workq", gpu_queue="gpuq", gpu_chunk="gpu_model=a100")
    request = JobRequest(rule="prepare", threads=1, resources={"mem_mb": 2000, "runtime": 30})
    args = line(request, settings)
    assert args[:9] == ["qsub", "-N", "prepare", "-l", "select=1:ncpus=1:mem=2000mb"] + [
        "-l",
        "walltime=00:30:00",
        "-q",
        "workq",
    ]
    assert "-A" not in args and "-v" not in args  # no submit-time variable asked for


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(1, "00:01:00"), (90, "01:30:00"), (360, "06:00:00"), (2.5, "00:02:30"), (3000, "50:00:00")],
)
def test_walltime_from_runtime_minutes(minutes, expected):
    assert walltime(minutes) == expected
    assert f"walltime={expected}" in line(train(runtime=minutes))


def test_walltime_is_capped_by_the_queue_limit():
    assert "walltime=04:00:00" in line(train(runtime=360), ExecutorSettings(max_walltime=240))


def test_memory_grown_after_a_memory_failure_replaces_the_jobs_own():
    args = line(train(mem_mb=16000, ngpus=1), mem_mb=32000)
    assert "select=1:ncpus=4:mem=32000mb:ngpus=1" in args


def test_gpu_aliases_cpus_chunk_and_no_exported_environment():
    settings = ExecutorSettings(chunk="host=n01", no_export_env=True, gpu_resource="gpus")
    request = JobRequest(rule="r", threads=2, resources={"cpus": 8, "gpu": 2, "mem_mb": 1000})
    args = line(request, settings, envvars=["WANDB_API_KEY"])
    assert "select=1:ncpus=8:mem=1000mb:gpus=2:host=n01" in args
    assert "-V" not in args and args[args.index("-v") + 1] == "WANDB_API_KEY"
    assert not any(a.startswith("walltime") for a in args)  # no runtime: the queue's default


def test_group_jobs_and_odd_wildcards_make_valid_pbs_names(tmp_path):
    group = JobRequest(rule="runs", group_id="1cf489ac-0611-5b76", attempt=2)
    assert group.name == "runs.1cf489ac"
    assert output_path(group, tmp_path, "T") == tmp_path / "runs" / "runs.1cf489ac.T.2.out"
    odd = JobRequest(rule="train", wildcards={"study": "quick", "exp": "lr=1e-3/bs 32"})
    assert odd.name == "train.quick.lr_1e-3_bs_32"
    assert JobRequest(rule="9x").name[0].isalpha()


def answers(*replies):
    """A qsub/qdel stand-in: answers (returncode, stdout, stderr) in turn, records calls."""
    calls = []

    def runner(args, timeout=None):
        calls.append(list(args))
        rc, out, err = replies[min(len(calls), len(replies)) - 1]
        return subprocess.CompletedProcess(args, rc, out, err)

    return runner, calls


def test_qsub_retries_while_the_server_is_down_then_returns_the_job_id():
    runner, calls = answers(
        (15010, "", "qsub: cannot connect to server vm (errno=111) Connection refused"),
        (15010, "", "qsub: cannot connect to server vm (errno=111) Connection refused"),
        (0, "42.vm\n", ""),
    )
    slept = []
    assert qsub(["qsub", "x"], 600, runner, sleep=slept.append, warn=lambda m: None) == "42.vm"
    assert len(calls) == 3 and slept == [2.0, 4.0]


def test_qsub_rejection_fails_at_once_with_pbs_message():
    runner, calls = answers((188, "", "qsub: Job exceeds queue resource limits"))
    with pytest.raises(SubmitError, match="exceeds queue resource limits"):
        qsub(["qsub", "x"], 600, runner, sleep=lambda s: None)
    assert len(calls) == 1


def test_qsub_gives_up_when_the_server_stays_down():
    runner, calls = answers((15010, "", "Connection refused"))
    with pytest.raises(SubmitError):
        qsub(["qsub", "x"], 10, runner, sleep=lambda s: None, warn=lambda m: None)
    assert len(calls) == 4  # waited 2 + 4 + 8 s, then gave up


def test_qdel_deletes_in_batches_and_ignores_finished_jobs():
    runner, calls = answers((35, "", "qdel: Job has finished 3.vm"))
    warnings = []
    assert qdel([f"{i}.vm" for i in range(250)], runner, warn=warnings.append) == 3
    assert [len(c) - 1 for c in calls] == [100, 100, 50] and not warnings
    runner, _ = answers((1, "", "qdel: Server unreachable"))
    qdel(["1.vm"], runner, warn=warnings.append)
    assert warnings and "Server unreachable" in warnings[0]


def test_failure_logs_name_every_seed_of_every_job_of_a_group(tmp_path):
    keep = tmp_path / "ck"
    keep.mkdir()
    for seed in (0, 1, 2, 7):
        (keep / f"seed{seed}.attempts.log").write_text("epoch 1\n")
    jobs = [
        {"rule": "train", "params": {"keep": str(keep), "seeds": [0, 1, 2]}},
        {"rule": "train", "params": {"keep": str(keep), "seeds": [2, 3]}},  # no log of seed 3
        {"rule": "prepare", "params": {}},  # no such params: pattern skipped
    ]
    pattern = "{params.keep}/seed{params.seeds}.attempts.log"
    assert failure_logs(pattern, jobs) == [str(keep / f"seed{s}.attempts.log") for s in (0, 1, 2)]
    assert failure_logs(f"{keep}/*.attempts.log", jobs[:1])[-1].endswith("seed7.attempts.log")
    assert failure_logs(None, jobs) == []
    props = {"rule": "t", "wildcards": {"cfg": "c"}, "params": {"n": [1, 2]}}
    assert expand_pattern("{rule}/{wildcards.cfg}/{params.n:02d}", props) == ["t/c/01", "t/c/02"]


def test_settings_refuse_bad_values():
    assert memory_exit_codes(ExecutorSettings(memory_exit_codes="3, 137")) == {3, 137}
    with pytest.raises(WorkflowError, match="memory-exit-codes"):
        ExecutorSettings(memory_exit_codes="oom")
    with pytest.raises(WorkflowError, match="queue"):
        ExecutorSettings(queue="work q")
    with pytest.raises(WorkflowError, match="memory-factor"):
        ExecutorSettings(memory_factor=0.5)
