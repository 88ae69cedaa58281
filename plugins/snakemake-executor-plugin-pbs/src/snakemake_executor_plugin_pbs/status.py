"""Job status from ``qstat -x -f -F json``: one batched call for all active jobs, and the
mapping of each job's attributes to running, success or failed with a reason in words."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .submit import Runner, run

RUNNING, SUCCESS, FAILED = "running", "success", "failed"

# Every job_state letter of qstat(1B). F and X are final and are decided by Exit_status.
JOB_STATES = {
    "B": "array job: at least one subjob has started",
    "E": "exiting after having run (staging out files)",
    "F": "finished",
    "H": "held",
    "M": "moved to another server",
    "Q": "queued",
    "R": "running",
    "S": "suspended",
    "T": "being moved to a new location",
    "U": "cycle-harvesting job suspended due to keyboard activity",
    "W": "waiting for its submitter-assigned start time",
    "X": "subjob finished or deleted",
}
FINAL_STATES = {"F", "X"}
SUBSTATE_TERMINATED = 91  # JOB_SUBSTATE_TERMINATED: finished because of qdel

# Negative Exit_status values: JOB_EXEC_* in OpenPBS src/include/job.h. The job script did not
# run, or PBS killed it.
PBS_EXEC_CODES = {
    -1: "JOB_EXEC_FAIL1: job could not be started (before files were staged), not retried",
    -2: "JOB_EXEC_FAIL2: job could not be started (after files were staged), not retried",
    -3: "JOB_EXEC_RETRY: job execution failed, PBS retries it",
    -4: "JOB_EXEC_INITABT: job aborted on MoM initialization",
    -5: "JOB_EXEC_INITRST: job aborted on MoM initialization, checkpoint, no migration",
    -6: "JOB_EXEC_INITRMG: job aborted on MoM initialization, checkpoint, migration ok",
    -7: "JOB_EXEC_BADRESRT: job restart failed",
    -10: "JOB_EXEC_FAILUID: invalid user or group id for the job",
    -11: "JOB_EXEC_RERUN: job was rerun",
    -12: "JOB_EXEC_CHKP: job was checkpointed and killed",
    -13: "JOB_EXEC_FAIL_PASSWORD: bad password",
    -14: "JOB_EXEC_RERUN_SIS_FAIL: job rerun after a sister MoM failed",
    -15: "JOB_EXEC_QUERST: job requeued for restart from checkpoint",
    -16: "JOB_EXEC_FAILHOOK_RERUN: a hook rejected the job start, requeued",
    -17: "JOB_EXEC_FAILHOOK_DELETE: a hook rejected the job start, job deleted",
    -18: "JOB_EXEC_HOOK_RERUN: a hook requested the job be requeued",
    -19: "JOB_EXEC_HOOK_DELETE: a hook requested the job be deleted",
    -20: "JOB_EXEC_RERUN_MS_FAIL: connection to the mother superior failed, job rerun",
    -21: "JOB_EXEC_FAIL_SECURITY: security breach in a PBS directory",
    -22: "JOB_EXEC_HOOKERROR: a hook raised an exception or timed out",
    -23: "JOB_EXEC_FAIL_KRB5: no Kerberos credentials",
    -24: "JOB_EXEC_KILL_NCPUS_BURST: killed for exceeding ncpus (burst)",
    -25: "JOB_EXEC_KILL_NCPUS_SUM: killed for exceeding ncpus (sum)",
    -26: "JOB_EXEC_KILL_VMEM: killed for exceeding vmem (raise mem_mb)",
    -27: "JOB_EXEC_KILL_MEM: killed for exceeding mem (raise mem_mb)",
    -28: "JOB_EXEC_KILL_CPUT: killed for exceeding cput",
    -29: "JOB_EXEC_KILL_WALLTIME: killed for exceeding walltime (raise runtime)",
    -30: "JOB_EXEC_JOINJOB: join job error",
}
WALLTIME_KILLED = -29
MEMORY_KILLED = frozenset({-26, -27})

SIGNALS = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}

UNKNOWN_JOB = re.compile(r"Unknown Job Id\s+(\S+)", re.IGNORECASE)
UNKNOWN_JOB_RC = 153  # PBSE_UNKJOBID % 256: some of the asked jobs are unknown
# The scheduler's comment on a job no node of the complex can ever hold, e.g.
# "Can Never Run: Insufficient amount of resource: ncpus (R: 4 A: 2 T: 2)"
# (R: requested, A: available now, T: total in the complex).
CAN_NEVER_RUN = re.compile(r"^\s*Can Never Run\b", re.IGNORECASE)
NEVER_RUN_ADVICE = (
    "PBS will never start it: ask for less (threads -> ncpus, mem_mb, ngpus, runtime; for a "
    "group job fewer --group-components) or use a queue whose nodes are big enough. The job "
    "was deleted (qdel) and is not retried"
)


@dataclass(frozen=True)
class Verdict:
    """One job's status as Snakemake needs it, with the reason in words."""

    status: str  # RUNNING, SUCCESS or FAILED
    reason: str
    exit_status: int | None = None
    never_run: bool = False  # refused by the scheduler for good: delete, do not retry
    held_by_system: bool = False

    @property
    def walltime_killed(self) -> bool:
        return self.exit_status == WALLTIME_KILLED

    @property
    def memory_killed(self) -> bool:
        return self.exit_status in MEMORY_KILLED


def describe_exit_status(code: int) -> str:
    """Why a job with this ``Exit_status`` ended, in words."""
    if code == 0:
        return "Exit_status 0"
    if code < 0:
        text = PBS_EXEC_CODES.get(code, "PBS could not run the job or killed it")
        return f"Exit_status {code}: {text}"
    if code >= 256:
        sig = code - 256
        return f"Exit_status {code}: killed by signal {sig} ({SIGNALS.get(sig, 'signal')})"
    if code > 128:  # the shell's 128 + N: the script, or a command in it, died of signal N
        sig = code - 128
        return (
            f"Exit_status {code}: killed by signal {sig} ({SIGNALS.get(sig, 'signal')}) "
            "inside the job (the job script or a command in it)"
        )
    return f"Exit_status {code}: the job script exited with status {code}"


def classify(attrs: dict[str, Any]) -> Verdict:
    """One job's ``qstat -x -f -F json`` attributes -> its verdict."""
    state = str(attrs.get("job_state", "?"))
    comment = attrs.get("comment")
    suffix = f" [comment: {comment}]" if comment else ""
    if state in FINAL_STATES:
        code = attrs.get("Exit_status")
        code = None if code is None else int(code)
        if int(attrs.get("substate", 0)) == SUBSTATE_TERMINATED:
            # qdel: a running job deleted this way can still report Exit_status 0
            text = "" if code is None else f", {describe_exit_status(code)}"
            return Verdict(FAILED, f"deleted (qdel) before it finished{text}{suffix}", code)
        if code is None:
            return Verdict(FAILED, f"job_state {state} without Exit_status (never ran){suffix}")
        status = SUCCESS if code == 0 else FAILED
        return Verdict(status, describe_exit_status(code) + suffix, code)
    if state in ("Q", "H") and comment and CAN_NEVER_RUN.search(str(comment)):
        return Verdict(FAILED, f"{comment}: {NEVER_RUN_ADVICE}", never_run=True)
    if state not in JOB_STATES:
        return Verdict(RUNNING, f"unrecognised job_state {state!r}, assumed running{suffix}")
    reason = f"job_state {state}: {JOB_STATES[state]}"
    by_system = state == "H" and "s" in str(attrs.get("Hold_Types", ""))
    if by_system:
        reason += " by the system (PBS failed to start it; ask the admins or qrls it)"
    return Verdict(RUNNING, reason + suffix, held_by_system=by_system)


def short_id(jobid: str) -> str:
    """``123.server.domain`` -> ``123`` (array ids keep their brackets: ``45[]``)."""
    return jobid.strip().split(".", 1)[0]


class QstatError(RuntimeError):
    """qstat gave no usable answer."""


def query(
    jobids: Sequence[str], runner: Runner = run, timeout: float = 60.0, batch: int = 500
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """``qstat -E -x -f -F json`` for the jobs -> ({short id: attributes}, unknown ids).

    One call per ``batch`` ids (500 ids are about 8 kB of command line). ``-E`` asks each
    server once for all its jobs instead of once per job id. Ids missing from the answer
    (history expired: exit 153, "Unknown Job Id") are returned as unknown; anything
    else that goes wrong raises :class:`QstatError`.
    """
    jobs: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()
    for start in range(0, len(jobids), batch):
        chunk = list(jobids[start : start + batch])
        try:
            proc = runner(["qstat", "-E", "-x", "-f", "-F", "json", *chunk], timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise QstatError(f"qstat did not answer: {err}") from err
        problems = [
            line
            for line in (proc.stderr or "").splitlines()
            if line.strip() and not UNKNOWN_JOB.search(line)
        ]
        if proc.returncode not in (0, UNKNOWN_JOB_RC) or (proc.returncode and problems):
            raise QstatError(f"qstat exit {proc.returncode}: {' '.join(problems)}")
        try:
            # strict=False: qstat prints job comments and variables with raw control chars
            data = json.loads(proc.stdout, strict=False) if proc.stdout.strip() else {}
        except json.JSONDecodeError as err:
            raise QstatError(f"qstat printed invalid JSON: {err}") from err
        found = {short_id(full): attrs for full, attrs in (data.get("Jobs") or {}).items()}
        jobs.update(found)
        unknown |= {j for j in chunk if short_id(j) not in found}
    return jobs, unknown
