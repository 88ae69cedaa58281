"""Snakemake executor plugin for PBS Pro and OpenPBS.

Each job is one ``qsub`` (:mod:`.submit`); each status check is one batched
``qstat -E -x -f -F json`` for all active jobs (:mod:`.status`); Ctrl-C is a batched ``qdel``
(:mod:`.cancel`). A failed job is reported with PBS's reason in words, the exit status of
the rule inside it, its PBS output and the logs named by ``failure_logs`` (:mod:`.failure`).
A job the scheduler says it can never run fails at once and is not retried; a job that ran
out of memory is retried with more (``memory_exit_codes``, ``memory_factor``), any other
failure with the same.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections import Counter
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings

from . import status
from .cancel import qdel
from .failure import failure_logs, rule_exit_status
from .records import Records
from .settings import ExecutorSettings, memory_exit_codes
from .submit import JobRequest, SubmitError, output_path, qsub, qsub_command

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,  # jobs cd into the working directory on a shared file system
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    # qsub -V (or -v NAME) passes --envvars; declaring them in the command would write their
    # values into the job script and PBS's job record
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=0,
)


def job_properties(job: JobExecutorInterface) -> list[dict[str, Any]]:
    """Snakemake's properties of a job, or of each job of a group job."""
    members = job.jobs if job.is_group() else [job]
    return [json.loads(member.properties()) for member in members]


def job_request(job: JobExecutorInterface) -> JobRequest:
    props = json.loads(job.properties())
    group = props.get("type") == "group"
    return JobRequest(
        rule=str(props.get("groupid") if group else props.get("rule")),
        wildcards=props.get("wildcards") or {},
        threads=int(props.get("threads") or 1),
        resources=props.get("resources") or {},
        attempt=job.attempt,
        group_id=str(props.get("jobid")) if group else None,
    )


class Executor(RemoteExecutor):
    def __post_init__(self):
        self.settings: ExecutorSettings = self.workflow.executor_settings
        if shutil.which("qsub") is None or shutil.which("qstat") is None:
            raise WorkflowError(
                "executor pbs: qsub or qstat is not on PATH; run Snakemake on a PBS login "
                "node, or add the PBS bin folder to PATH (e.g. /opt/pbs/bin)"
            )
        self.logdir = self.settings.log_folder
        self.records = Records(self.logdir)
        self.memory_codes = memory_exit_codes(self.settings)
        self.memory_failures: Counter[str] = Counter()  # per job: failures for lack of memory
        self.unknown: Counter[str] = Counter()  # per PBS job: status checks without it
        self.qstat_failures = 0
        self.reported_holds: set[str] = set()

    def _warn(self, msg: str) -> None:
        getattr(self.logger, "warning", self.logger.info)(msg)

    def get_job_exec_prefix(self, job: JobExecutorInterface) -> str:
        # a PBS job starts in the home folder
        return f"cd {shlex.quote(str(self.workflow.workdir_init))}"

    # ---------------------------------------------------------------------------- submit

    def memory_for(self, job: JobExecutorInterface, request: JobRequest) -> int | None:
        """The job's mem_mb, grown by memory_factor per memory failure of an earlier attempt."""
        mem_mb = request.resources.get("mem_mb")
        failures = self.memory_failures[self._key(job)]
        if not mem_mb:
            return None
        return int(round(float(mem_mb) * self.settings.memory_factor**failures))

    @staticmethod
    def _key(job: JobExecutorInterface) -> str:
        return str(job.jobid)  # the same for every attempt of a job (group: its uuid)

    def run_job(self, job: JobExecutorInterface):
        request = job_request(job)
        jobscript = self.get_jobscript(job)
        self.write_jobscript(job, jobscript)
        output = output_path(request, self.logdir, time.strftime("%Y%m%dT%H%M%S"))
        output.parent.mkdir(parents=True, exist_ok=True)  # PBS cannot deliver into nothing
        mem_mb = self.memory_for(job, request)
        submitted = time.time()
        args = qsub_command(
            request,
            self.settings,
            jobscript,
            output,
            mem_mb=mem_mb,
            submitted=submitted,
            envvars=self.workflow.remote_execution_settings.envvars,
        )
        self.logger.debug(f"qsub call: {shlex.join(args)}")
        try:
            jobid = qsub(args, self.settings.qsub_retry_seconds, warn=self._warn)
        except SubmitError as err:
            self.report_job_error(SubmittedJobInfo(job), msg=f"{err}\n")
            return
        grown = mem_mb != request.resources.get("mem_mb")
        self.logger.info(
            f"Job {job.jobid} has been submitted with PBS jobid {jobid} (output: {output})"
            + (f"; mem {mem_mb} MB after a memory failure" if grown else "")
            + "."
        )
        self.records.submitted(
            {
                "jobid": jobid,
                "name": request.name,
                "rule": request.rule,
                "wildcards": request.wildcards,
                "attempt": request.attempt,
                "mem_mb": mem_mb,
                "output": str(output.resolve()),
                "submitted": submitted,
                "qsub": shlex.join(args),
            }
        )
        aux = {"output": output, "name": request.name, "props": job_properties(job)}
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=jobid, aux=aux))

    # ---------------------------------------------------------------------------- status

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not active_jobs:
            return
        ids = [j.external_jobid for j in active_jobs]
        async with self.status_rate_limiter:
            try:
                found, _ = status.query(ids, timeout=self.settings.qstat_timeout)
            except status.QstatError as err:
                # a restarting or overloaded server must not fail the workflow
                self.qstat_failures += 1
                self._warn(
                    f"PBS status check failed ({self.qstat_failures} in a row): {err}; "
                    f"{len(ids)} jobs count as running until qstat answers"
                )
                for j in active_jobs:
                    yield j
                return
        self.qstat_failures = 0
        live: dict[str, list[str]] = {}
        final: dict[str, list[str]] = {}
        for j in active_jobs:
            key = status.short_id(j.external_jobid)
            verdict = self._verdict(key, found.get(key))
            if verdict.status == status.RUNNING:
                live[key] = [verdict.status, verdict.reason]
                if verdict.held_by_system and key not in self.reported_holds:
                    self.reported_holds.add(key)
                    self._warn(f"PBS job {j.external_jobid}: {verdict.reason}")
                yield j
                continue
            final[key] = [verdict.status, verdict.reason]
            if verdict.status == status.SUCCESS:
                self.report_job_success(j)
            else:
                self._report_failure(j, verdict)
        self.records.verdicts(live, final)

    def _verdict(self, key: str, attrs: dict[str, Any] | None) -> status.Verdict:
        if attrs is not None:
            self.unknown.pop(key, None)
            return status.classify(attrs)
        self.unknown[key] += 1
        misses = self.unknown[key]
        if misses < self.settings.unknown_job_limit:  # not yet in qstat's answer
            return status.Verdict(status.RUNNING, f"unknown to qstat ({misses}x)")
        return status.Verdict(
            status.FAILED,
            f"qstat no longer knows the job ({misses} checks in a row): job history off or "
            "expired? (qmgr -c 'set server job_history_enable=True')",
        )

    def _report_failure(self, j: SubmittedJobInfo, verdict: status.Verdict) -> None:
        job, output = j.job, Path(j.aux["output"])
        parts = [f"PBS job {j.external_jobid} ({j.aux['name']}) failed: {verdict.reason}"]
        if verdict.never_run:
            qdel([j.external_jobid], warn=self._warn)  # it would wait in the queue forever
            self._no_retry(job)
        rule_exit = rule_exit_status(output)
        memory = verdict.memory_killed or rule_exit in self.memory_codes
        if rule_exit is not None:
            parts.append(
                f"its rule's command exited with status {rule_exit}"
                + (" (out of memory)" if memory else "")
            )
        if memory:
            self.memory_failures[self._key(job)] += 1
            if self._retries_left(job):
                mem = self.memory_for(job, job_request(job))
                parts.append(f"the retry asks for mem={mem}mb")
        elif self._retries_left(job) and self.memory_for(job, job_request(job)):
            parts.append(f"the retry keeps mem={self.memory_for(job, job_request(job))}mb")
        # named in the message, not as aux logs: show-failed-logs would print them whole
        kept = failure_logs(self.settings.failure_logs, j.aux["props"])
        if kept:
            parts.append(f"logs of every attempt: {', '.join(kept)}")
        msg = "; ".join(parts) + ". "  # Snakemake appends its own sentence
        outputs = [str(output)] if output.is_file() else []
        self.records.failed(msg + (f"PBS output: {output}" if outputs else ""))
        if job.is_group():  # Snakemake 9 does not print the message of a failed group job
            self.logger.error(msg)
        self.report_job_error(j, msg=msg, aux_logs=outputs)

    @staticmethod
    def _retries_left(job: JobExecutorInterface) -> bool:
        return job.attempt <= getattr(job, "restart_times", 0)

    @staticmethod
    def _no_retry(job: JobExecutorInterface) -> None:
        """Snakemake retries a failed job while attempt <= restart_times and its executor
        interface has no "do not retry" answer: use up the attempts instead."""
        restart_times = getattr(job, "restart_times", None)
        if restart_times is not None and job.attempt <= restart_times:
            job.attempt = restart_times + 1

    # ---------------------------------------------------------------------------- cancel

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]):
        ids = [j.external_jobid for j in active_jobs if j.external_jobid]
        if ids:
            calls = qdel(ids, warn=self._warn)
            self.logger.info(f"Cancelled {len(ids)} PBS jobs with {calls} qdel call(s).")
