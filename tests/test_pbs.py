"""profiles/pbs and what hpstudy relies on from the PBS executor plugin, without a server.

The plugin's own unit tests (qsub line, qstat answers captured from OpenPBS 23.06.06, qdel)
live in plugins/snakemake-executor-plugin-pbs/tests; the live tests in test_pbs_live.py.
"""

from pathlib import Path

import pytest
import yaml
from snakemake_executor_plugin_pbs import ExecutorSettings
from snakemake_executor_plugin_pbs.failure import failure_logs
from snakemake_executor_plugin_pbs.settings import memory_exit_codes
from snakemake_executor_plugin_pbs.submit import JobRequest, qsub_command

from hpstudy import attempts
from hpstudy.failures import EXIT_OUT_OF_MEMORY

PROFILE = Path(__file__).parents[1] / "profiles" / "pbs" / "config.v8+.yaml"


@pytest.fixture(scope="module")
def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


@pytest.fixture(scope="module")
def settings(profile) -> ExecutorSettings:
    """The plugin settings the profile gives (each pbs-* key is one field: a typo fails)."""
    fields = {k.removeprefix("pbs-").replace("-", "_"): v for k, v in profile.items()}
    return ExecutorSettings(**{k: v for k, v in fields.items() if k in pbs_keys(profile)})


def pbs_keys(profile) -> set[str]:
    keys = {k.removeprefix("pbs-").replace("-", "_") for k in profile if k.startswith("pbs-")}
    unknown = keys - set(ExecutorSettings.__dataclass_fields__)
    assert not unknown, f"{PROFILE}: not settings of the pbs executor: {sorted(unknown)}"
    return keys


def test_profile_runs_the_pbs_executor(profile):
    assert profile["executor"] == "pbs"
    assert not any(k.startswith("cluster-generic") for k in profile)  # one way to submit


def test_profile_settings_are_what_hpstudy_reads(settings):
    """The job environment variables and the out-of-memory exit status of the train script."""
    assert settings.submit_time_var == attempts.SUBMIT_TIME_VAR  # queue wait of each attempt
    assert settings.gpus_var == "HPSTUDY_JOB_GPUS"  # hpstudy.gpuslots
    assert memory_exit_codes(settings) == {EXIT_OUT_OF_MEMORY}


def test_train_memory_does_not_grow_with_every_attempt(profile):
    """A walltime retry keeps the memory (the plugin grows it after a memory failure only):
    `mem_mb: 16000 * attempt` made the retry of a killed job a 32 GB request."""
    for rule in ("train", "train_round"):
        mem = profile["set-resources"][rule]["mem_mb"]
        assert isinstance(mem, int), (rule, mem)


def test_failure_logs_name_every_attempt_log_of_every_seed_of_a_train_job(settings, tmp_path):
    """The profile's pattern, applied to a train job's params (keep dir and seeds, as in
    workflow/rules/train.smk), finds the attempts logs hpstudy.attempts writes."""
    keep = tmp_path / "results" / "quick" / "checkpoints" / "1a2b3c"
    keep.mkdir(parents=True)
    logs = [attempts.log_path(keep / f"seed{seed}.pt") for seed in (0, 1, 2)]
    for log in logs:
        log.write_text("=== attempt 1\n")
    attempts.log_path(keep / "seed9.pt").write_text("a seed of another round\n")
    job = {"rule": "train", "params": {"keep": str(keep), "seeds": [0, 1, 2], "cfg": {}}}
    assert failure_logs(settings.failure_logs, [job]) == [str(p) for p in logs]
    assert failure_logs(settings.failure_logs, [{"rule": "prepare", "params": {}}]) == []


def test_qsub_line_of_a_train_job_through_the_profile(profile, settings):
    request = JobRequest(
        rule="train",
        wildcards={"study": "quick", "cfg": "1a2b3c"},
        threads=profile["set-threads"]["train"],
        resources={**profile["set-resources"]["train"], "runtime": 42},
    )
    args = qsub_command(request, settings, "/w/job.sh", Path("/w/o.out"), submitted=1.7e9)
    assert args[:7] == [
        "qsub",
        "-N",
        "train.quick.1a2b3c",
        "-l",
        "select=1:ncpus=4:mem=16000mb:ngpus=1",
        "-l",
        "walltime=00:42:00",
    ]
    assert "-V" in args and "-j" in args and args[args.index("-j") + 1] == "oe"
    assert args[args.index("-v") + 1] == "HPSTUDY_SUBMIT_TIME=1700000000,HPSTUDY_JOB_GPUS=1"
