"""The plugin's settings: everything a PBS site needs to say about submitting jobs.

Each field is a command line option ``--pbs-<name>`` and a profile key ``pbs-<name>``; the
fields marked ``env_var`` can also come from ``SNAKEMAKE_PBS_<NAME>`` (a private site file is
then not needed). Job sizes are not settings: they come from each job's threads and
resources (``mem_mb``, ``runtime``, ``ngpus``), see :mod:`.submit`.

No ``from __future__ import annotations`` and no ``X | None`` here: Snakemake reads the
field types at run time to parse command line values, and understands ``Optional[X]`` only.
"""
# ruff: noqa: UP045

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase


def _option(help_text: str, env_var: bool = False, **metadata):
    return {"help": help_text, "env_var": env_var, "required": False, **metadata}


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    queue: Optional[str] = field(
        default=None,
        metadata=_option(
            "qsub -q for jobs that ask for no GPU (default: the server's default queue).",
            env_var=True,
        ),
    )
    gpu_queue: Optional[str] = field(
        default=None,
        metadata=_option(
            "qsub -q for jobs that ask for GPUs (resource ngpus, gpu or gpus; default: the "
            "queue setting).",
            env_var=True,
        ),
    )
    account: Optional[str] = field(
        default=None,
        metadata=_option("qsub -A: the account string jobs are charged to.", env_var=True),
    )
    project: Optional[str] = field(
        default=None,
        metadata=_option("qsub -P: the PBS project jobs belong to.", env_var=True),
    )
    gpu_resource: str = field(
        default="ngpus",
        metadata=_option(
            "Chunk resource that counts GPUs in the select statement (ngpus on PBS Pro and "
            "OpenPBS; some sites name it gpus).",
            env_var=True,
        ),
    )
    gpu_chunk: Optional[str] = field(
        default=None,
        metadata=_option(
            "The GPU flavour: extra chunk resources of jobs that ask for GPUs, e.g. "
            "'gpu_model=a100' -> select=1:ncpus=8:mem=32000mb:ngpus=1:gpu_model=a100.",
            env_var=True,
        ),
    )
    chunk: Optional[str] = field(
        default=None,
        metadata=_option(
            "Extra chunk resources of every job's select statement, e.g. 'host=node01'.",
            env_var=True,
        ),
    )
    max_walltime: Optional[int] = field(
        default=None,
        metadata=_option(
            "Cap on the walltime in minutes (the queue's limit), so that a retry that asks "
            "for more time than the queue allows is still accepted."
        ),
    )
    extra_args: Optional[str] = field(
        default=None,
        metadata=_option(
            "More qsub arguments, as shell words, e.g. '-W group_list=proj -m a'.", env_var=True
        ),
    )
    no_export_env: bool = field(
        default=False,
        metadata=_option(
            "Do not pass qsub -V. By default jobs inherit the environment of the shell that "
            "runs Snakemake (its PATH, virtual environment and --envvars)."
        ),
    )
    logdir: Optional[Path] = field(
        default=None,
        metadata=_option(
            "Folder of the jobs' PBS output (stdout and stderr joined, one file per job, "
            "<logdir>/<rule>/<job name>.<time>.<attempt>.out) and of status.log, one line "
            "per failed job (default: .snakemake/pbs_logs)."
        ),
    )
    submit_time_var: Optional[str] = field(
        default=None,
        metadata=_option(
            "Name of an environment variable set in every job to the Unix time of its qsub, "
            "so that a job can measure how long it waited in the queue."
        ),
    )
    gpus_var: Optional[str] = field(
        default=None,
        metadata=_option(
            "Name of an environment variable set in every GPU job to its GPU count (on sites "
            "without the cgroups hook PBS does not say how many GPUs a job holds)."
        ),
    )
    memory_exit_codes: Optional[str] = field(
        default=None,
        metadata=_option(
            "Exit statuses of a rule that mean it ran out of memory, comma-separated, e.g. "
            "'3'. After such a failure, and after PBS killed a job for its memory "
            "(Exit_status -26/-27), the retry asks for memory_factor times more memory; "
            "other failures (walltime, errors) retry with the same memory."
        ),
    )
    memory_factor: float = field(
        default=2.0,
        metadata=_option("Memory growth per memory failure of a job (see memory_exit_codes)."),
    )
    failure_logs: Optional[str] = field(
        default=None,
        metadata=_option(
            "More logs to name when a job fails: glob patterns separated by spaces, "
            "formatted with the job's rule, wildcards and params, e.g. "
            "'{params.keep}/seed{params.seeds}.attempts.log' (a list-valued field gives one "
            "pattern per element). For logs a rule keeps outside its log: files, which "
            "Snakemake empties before every attempt. Patterns naming a field the job lacks "
            "are skipped."
        ),
    )
    qsub_retry_seconds: int = field(
        default=600,
        metadata=_option(
            "Keep retrying qsub this long while the server is unreachable (connection "
            "refused, timeouts); a rejection (bad queue, too many resources) fails at once."
        ),
    )
    qstat_timeout: int = field(
        default=60,
        metadata=_option("Seconds before a hanging qstat counts as a failed status check."),
    )
    unknown_job_limit: int = field(
        default=3,
        metadata=_option(
            "Status checks in a row that qstat does not know a job before it counts as "
            "failed (job history off or expired: qmgr -c 'set server job_history_enable=True')."
        ),
    )

    def __post_init__(self):
        for name in ("queue", "gpu_queue"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[\w.@-]+", value):
                raise WorkflowError(f"--pbs-{name.replace('_', '-')} {value!r}: not a queue name")
        if self.memory_factor < 1:
            raise WorkflowError(f"--pbs-memory-factor {self.memory_factor}: must be >= 1")
        memory_exit_codes(self)  # raises on a malformed list

    @property
    def log_folder(self) -> Path:
        return Path(self.logdir) if self.logdir else Path(".snakemake") / "pbs_logs"


def memory_exit_codes(settings: ExecutorSettings) -> frozenset[int]:
    """``memory_exit_codes`` as a set of ints."""
    text = (settings.memory_exit_codes or "").replace(" ", "")
    try:
        return frozenset(int(code) for code in text.split(",") if code)
    except ValueError:
        raise WorkflowError(
            f"--pbs-memory-exit-codes {settings.memory_exit_codes!r}: give exit statuses "
            "separated by commas, e.g. '3' or '3,137'"
        ) from None
