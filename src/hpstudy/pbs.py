"""PBS Pro / OpenPBS glue for Snakemake's cluster-generic executor.

``profiles/pbs/{submit,status,cancel}.py`` are thin executables around :func:`submit_main`,
:func:`status_main` and :func:`cancel_main`. Everything site-specific (queue, account, GPU
flavour, extra qsub arguments) comes from one YAML file, ``profiles/pbs/site.yaml``
(:class:`Site`); everything job-specific (threads, ``mem_mb``, ``runtime``, ``ngpus``) comes
from the job properties Snakemake writes into each jobscript.

- :func:`build_qsub_args` is the one place the ``qsub`` line is built.
- :func:`classify` maps one job of ``qstat -x -f -F json`` to exactly one of
  ``running``/``success``/``failed`` together with a human-readable reason.
- :class:`StatusBoard` answers Snakemake's one-job-at-a-time status questions from one
  batched, rate-limited ``qstat`` call for all jobs this workflow submitted, survives
  transient ``qstat`` failures and logs why each failed job failed.

State lives in ``.snakemake/pbs/`` of the working directory: ``jobs.jsonl`` (one line per
submitted job) and ``status.json`` (the last qstat answer and every final verdict).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

RUNNING, SUCCESS, FAILED = "running", "success", "failed"

SITE_ENV = "HPSTUDY_PBS_SITE"  # overrides the path of the site file
STATE_DIR = Path(".snakemake") / "pbs"

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
    -26: "JOB_EXEC_KILL_VMEM: killed for exceeding vmem",
    -27: "JOB_EXEC_KILL_MEM: killed for exceeding mem (raise mem_mb)",
    -28: "JOB_EXEC_KILL_CPUT: killed for exceeding cput",
    -29: "JOB_EXEC_KILL_WALLTIME: killed for exceeding walltime (raise runtime)",
    -30: "JOB_EXEC_JOINJOB: join job error",
}

SIGNALS = {1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}

# qstat/qsub failures worth retrying: the server is restarting, busy or unreachable.
TRANSIENT = re.compile(
    r"connect|timed? ?out|temporar|try again|communication|end of file|no route|refused|busy",
    re.IGNORECASE,
)
UNKNOWN_JOB = re.compile(r"Unknown Job Id\s+(\S+)", re.IGNORECASE)
UNKNOWN_JOB_RC = 153  # PBSE_UNKJOBID % 256
# The scheduler's comment on a job no node of the complex can ever hold, e.g.
# "Can Never Run: Insufficient amount of resource: ncpus (R: 4 A: 2 T: 2)"
# (R: requested, A: available now, T: total in the complex).
CAN_NEVER_RUN = re.compile(r"^\s*Can Never Run\b", re.IGNORECASE)
NEVER_RUN_ADVICE = (
    "PBS will never start it: ask for less (threads -> ncpus, mem_mb, ngpus, runtime in "
    "profiles/pbs/config.v8+.yaml; with --groups, fewer --group-components) or a queue whose "
    "nodes are big enough; the job was deleted (qdel)"
)


# --------------------------------------------------------------------------- site settings


@dataclasses.dataclass
class Site:
    """The site file: every cluster-specific qsub setting, in one place."""

    queue: str | None = None  # -q for jobs without GPUs (None: server's default queue)
    account: str | None = None  # -A account/project charged (None: no -A)
    gpu_queue: str | None = None  # -q for jobs that request GPUs (None: same as queue)
    gpu_resource: str = "ngpus"  # chunk resource that counts GPUs
    gpu_chunk: str = ""  # extra chunk resources of GPU jobs, e.g. "gpu_model=a100"
    chunk: str = ""  # extra chunk resources of every job
    max_walltime_minutes: int | None = None  # cap on walltime (the queue's limit)
    export_env: bool = True  # qsub -V: the job sees the submitting shell's environment
    extra_args: list[str] = dataclasses.field(default_factory=list)  # more qsub arguments
    log_dir: str = "logs/pbs"  # PBS output of each job (stdout+stderr), and status.log
    qsub_retry_seconds: float = 600.0  # keep retrying qsub this long while PBS is unreachable
    qstat_interval: float = 10.0  # at most one qstat call per this many seconds
    qstat_timeout: float = 60.0  # seconds before a hanging qstat counts as failed
    qstat_retries: int = 3  # tries per status refresh before answering "running"
    unknown_job_limit: int = 3  # answers without the job before it counts as failed


def load_site(path: str | os.PathLike | None = None) -> Site:
    """Read the site file (``$HPSTUDY_PBS_SITE`` wins over ``path``); unknown keys are errors."""
    path = os.environ.get(SITE_ENV) or path
    if not path:
        return Site()
    data = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in dataclasses.fields(Site)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown PBS site settings {unknown}; known: {sorted(known)}")
    site = Site(**data)
    if isinstance(site.extra_args, str):
        site.extra_args = shlex.split(site.extra_args)
    return site


# --------------------------------------------------------------------------- submit


def read_job_properties(jobscript: str | os.PathLike) -> dict[str, Any]:
    """The ``# properties = {...}`` JSON line Snakemake writes into every jobscript."""
    with open(jobscript) as fh:
        for line in fh:
            if line.startswith("# properties = "):
                return json.loads(line.split("=", 1)[1])
    raise ValueError(f"{jobscript}: no '# properties = ' line; not a Snakemake jobscript")


def job_name(props: dict[str, Any]) -> str:
    """A PBS job name: rule and wildcard values (group: group name and id), PBS-safe."""
    if props.get("type") == "group":  # jobid: a UUID per group job
        parts = [str(props.get("groupid", "group")), str(props.get("jobid", ""))[:8]]
    else:
        parts = [str(props.get("rule", "job"))]
        parts += [str(v) for v in (props.get("wildcards") or {}).values()]
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", ".".join(parts))
    if not name[:1].isalpha():
        name = "j" + name
    return name[:100]


def gpu_count(resources: dict[str, Any]) -> int:
    """GPUs a job asks for: resource ``ngpus`` (PBS name), else ``gpu``, else ``gpus``."""
    for key in ("ngpus", "gpu", "gpus"):
        if resources.get(key) not in (None, ""):
            return int(resources[key])
    return 0


def walltime(minutes: float) -> str:
    """Snakemake ``runtime`` (minutes) as PBS ``HH:MM:SS``."""
    seconds = max(1, round(float(minutes) * 60))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def log_path(props: dict[str, Any], site: Site, workdir: Path, stamp: str) -> Path:
    """Where PBS writes the job's output, stdout and stderr joined (``-j oe``):
    ``<log_dir>/<rule>/<name>.<stamp>.out``."""
    folder = Path(workdir) / site.log_dir / str(props.get("rule") or props.get("groupid"))
    return folder / f"{job_name(props)}.{stamp}.out"


def attempts_log(props: dict[str, Any]) -> str | None:
    """The training log of every attempt of a train job (kept next to its checkpoint, outside
    Snakemake's outputs: see hpstudy.attempts), or None for other jobs."""
    checkpoint = (props.get("params") or {}).get("checkpoint")
    if not isinstance(checkpoint, str):
        return None
    from hpstudy.attempts import log_path as attempts_log_path

    return str(attempts_log_path(checkpoint))


def build_qsub_args(
    props: dict[str, Any],
    site: Site,
    jobscript: str,
    workdir: str | os.PathLike = ".",
    stamp: str = "",
    submitted: float | None = None,
) -> list[str]:
    """The ``qsub`` command line for one Snakemake job: the only place it is built.

    One chunk ``select=1:ncpus=<threads>:mem=<mem_mb>mb[:ngpus=<n>]``, walltime from
    ``runtime`` (minutes; the profile scales it with ``attempt``), queue/account/GPU flavour and
    extra arguments from the site file. ``-v HPSTUDY_SUBMIT_TIME=<submitted>`` (Unix seconds,
    now by default) lets the job record its queue wait (hpstudy.attempts).
    """
    res = props.get("resources") or {}
    ncpus = max(int(props.get("threads") or 1), int(res.get("cpus") or 0), 1)
    chunk = ["select=1", f"ncpus={ncpus}"]
    if res.get("mem_mb"):
        chunk.append(f"mem={int(res['mem_mb'])}mb")
    gpus = gpu_count(res)
    if gpus:
        chunk.append(f"{site.gpu_resource}={gpus}")
        if site.gpu_chunk:
            chunk.append(site.gpu_chunk.strip(":"))
    if site.chunk:
        chunk.append(site.chunk.strip(":"))

    args = ["qsub", "-N", job_name(props), "-l", ":".join(chunk)]
    if res.get("runtime"):
        minutes = float(res["runtime"])
        if site.max_walltime_minutes:
            minutes = min(minutes, float(site.max_walltime_minutes))
        args += ["-l", f"walltime={walltime(minutes)}"]
    queue = (site.gpu_queue or site.queue) if gpus else site.queue
    if queue:
        args += ["-q", queue]
    if site.account:
        args += ["-A", site.account]
    stamp = stamp or time.strftime("%Y%m%dT%H%M%S")
    # -j oe: one file with stdout and stderr (Snakemake inside the job writes to stderr)
    args += ["-j", "oe", "-o", str(log_path(props, site, Path(workdir).resolve(), stamp))]
    if site.export_env:
        args.append("-V")
    submitted = time.time() if submitted is None else submitted
    variables = [f"HPSTUDY_SUBMIT_TIME={submitted:.0f}"]  # queue wait = start - this
    if gpus:  # runs packed into this job spread over its GPUs (hpstudy.gpuslots)
        variables.append(f"HPSTUDY_JOB_GPUS={gpus}")
    args += ["-v", ",".join(variables)]  # one -v: a comma-separated list
    args += [str(a) for a in site.extra_args]
    args.append(str(jobscript))
    return args


Runner = Callable[..., subprocess.CompletedProcess]


def _run(args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def submit(
    jobscript: str,
    site: Site,
    run: Runner = _run,
    state_dir: Path = STATE_DIR,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """qsub one jobscript, register the job for the status command, return the PBS job id.

    While the server is unreachable (restart, overload) qsub is retried with back-off for up
    to ``site.qsub_retry_seconds``; a rejection (bad queue, too many resources) fails at once.
    """
    props = read_job_properties(jobscript)
    args = build_qsub_args(props, site, jobscript)
    out_path = Path(args[args.index("-o") + 1])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    waited, delay = 0.0, 2.0
    while True:
        try:
            proc = run(args, timeout=120)
        except subprocess.TimeoutExpired as err:
            proc = subprocess.CompletedProcess(args, 124, "", f"qsub timed out: {err}")
        if proc.returncode == 0 and proc.stdout.strip():
            break
        if waited >= site.qsub_retry_seconds or not TRANSIENT.search(proc.stderr or ""):
            raise RuntimeError(
                f"qsub failed (exit {proc.returncode}): {(proc.stderr or '').strip()}\n"
                f"command: {shlex.join(args)}"
            )
        print(f"qsub: {(proc.stderr or '').strip()}; retrying in {delay:.0f} s", file=sys.stderr)
        sleep(delay)
        waited += delay
        delay = min(2 * delay, 60.0)
    jobid = proc.stdout.strip().splitlines()[0].strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "jobid": jobid,
        "name": job_name(props),
        "rule": props.get("rule") or props.get("groupid"),
        "wildcards": props.get("wildcards"),
        "output": str(out_path),
        # the workflow invocation: Snakemake writes its jobscripts to one temporary folder
        # per run, so a rerun never reports the jobs of an earlier run (see StatusBoard)
        "invocation": Path(jobscript).resolve().parent.name,
        "attempts_log": attempts_log(props),
        "submitted": time.time(),
        "qsub": shlex.join(args),
    }
    with open(state_dir / "jobs.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    return jobid


# --------------------------------------------------------------------------- status


def describe_exit_status(code: int) -> str:
    """Why a job with this ``Exit_status`` ended, in words."""
    if code == 0:
        return "exit status 0"
    if code < 0:
        text = PBS_EXEC_CODES.get(code, "PBS could not run the job or killed it")
        return f"Exit_status {code}: {text}"
    if code >= 256:
        sig = code - 256
        return f"Exit_status {code}: killed by signal {sig} ({SIGNALS.get(sig, 'signal')})"
    text = f"Exit_status {code}: the job script exited with status {code}"
    if code > 128:
        sig = code - 128
        text += f" (a process in it was killed by signal {sig}, {SIGNALS.get(sig, 'signal')})"
    return text


def classify(attrs: dict[str, Any]) -> tuple[str, str]:
    """One job's ``qstat -x -f -F json`` attributes -> (running|success|failed, reason)."""
    state = str(attrs.get("job_state", "?"))
    comment = attrs.get("comment")
    suffix = f" [comment: {comment}]" if comment else ""
    if state in FINAL_STATES:
        code = attrs.get("Exit_status")
        if int(attrs.get("substate", 0)) == SUBSTATE_TERMINATED:
            # qdel: a running job deleted this way can still report Exit_status 0.
            text = "" if code is None else f", {describe_exit_status(int(code))}"
            return FAILED, f"deleted (qdel) before it finished{text}{suffix}"
        if code is None:
            return FAILED, f"job_state {state} without Exit_status (never ran){suffix}"
        code = int(code)
        return (SUCCESS if code == 0 else FAILED), describe_exit_status(code) + suffix
    if state in ("Q", "H") and comment and CAN_NEVER_RUN.search(str(comment)):
        return FAILED, f"{comment}: {NEVER_RUN_ADVICE}"
    if state in JOB_STATES:
        reason = f"job_state {state}: {JOB_STATES[state]}"
        if state == "H" and "s" in str(attrs.get("Hold_Types", "")):
            reason += " by the system (PBS failed to start it; ask the admins or qrls it)"
        return RUNNING, reason + suffix
    return RUNNING, f"unrecognised job_state {state!r}, assumed still running{suffix}"


def short_id(jobid: str) -> str:
    """``123.server.domain`` -> ``123`` (array ids keep their brackets: ``45[]``)."""
    return jobid.strip().split(".", 1)[0]


class QstatError(RuntimeError):
    """qstat gave no usable answer."""


def query_qstat(
    jobids: Sequence[str], run: Runner = _run, timeout: float = 60.0, batch: int = 100
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """``qstat -E -x -f -F json`` for ``batch`` job ids at a time -> ({short id: attrs}, unknown).

    ``-E`` matters: without it OpenPBS (23.06) prints only the first job's JSON when given
    several ids. Ids missing from the answer (history expired, or rc 153 "Unknown Job Id")
    are returned as unknown; anything else that goes wrong raises :class:`QstatError`.
    """
    jobs: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()
    for start in range(0, len(jobids), batch):
        chunk = list(jobids[start : start + batch])
        try:
            proc = run(["qstat", "-E", "-x", "-f", "-F", "json", *chunk], timeout=timeout)
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
            data = json.loads(proc.stdout, strict=False) if proc.stdout.strip() else {}
        except json.JSONDecodeError as err:
            raise QstatError(f"qstat printed invalid JSON: {err}") from err
        found = {short_id(full): attrs for full, attrs in (data.get("Jobs") or {}).items()}
        jobs.update(found)
        unknown |= {j for j in chunk if short_id(j) not in found}
    return jobs, unknown


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class StatusBoard:
    """Status of every job this workflow submitted, from one batched, rate-limited qstat call.

    Snakemake asks about one job per call; the board refreshes all registered, not yet final
    jobs at most once per ``site.qstat_interval`` seconds (a file lock keeps concurrent calls
    from querying twice) and keeps final verdicts forever.
    """

    def __init__(
        self,
        site: Site,
        state_dir: Path = STATE_DIR,
        run: Runner = _run,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.site, self.state_dir, self.run, self.clock, self.sleep = (
            site,
            Path(state_dir),
            run,
            clock,
            sleep,
        )
        self.path = self.state_dir / "status.json"

    # -- persistence
    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"time": 0.0, "live": {}, "final": {}, "unknown": {}}

    def _save(self, board: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(board))
        os.replace(tmp, self.path)

    def registered(self) -> dict[str, dict[str, Any]]:
        """Submitted jobs, by short id (from ``jobs.jsonl``)."""
        jobs = {}
        with contextlib.suppress(FileNotFoundError), open(self.state_dir / "jobs.jsonl") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    jobs[short_id(rec["jobid"])] = rec
        return jobs

    def log(self, jobid: str, status: str, reason: str) -> None:
        """Append one line to ``<log_dir>/status.log`` and echo it to stderr."""
        rec = self.registered().get(short_id(jobid), {})
        where = ""
        if rec.get("attempts_log"):
            where += f"; training log of every attempt: {rec['attempts_log']}"
        if rec.get("output") or rec.get("stdout"):
            where += f" (PBS output: {rec.get('output') or rec.get('stdout')})"
        line = f"PBS job {jobid} {rec.get('name', '')}: {status}: {reason}{where}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.clock()))
        path = Path(self.site.log_dir) / "status.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{stamp}\t{line}\n")
        print(line, file=sys.stderr)

    def _delete(self, jobid: str) -> None:
        """qdel a job that failed while PBS still holds it (it would stay queued forever)."""
        try:
            proc = self.run(["qdel", jobid], timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            print(f"qdel {jobid} failed: {err}", file=sys.stderr)
            return
        if proc.returncode:
            print(f"qdel {jobid}: exit {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)

    # -- the question Snakemake asks
    def status(self, jobid: str) -> str:
        key = short_id(jobid)
        with _locked(self.state_dir / "status.lock"):
            board = self._load()
            if key in board["final"]:
                return board["final"][key][0]
            # Rate limit: between refreshes, jobs not seen yet (just submitted) are running.
            if self.clock() - board["time"] >= self.site.qstat_interval:
                self._refresh(board, jobid)
                self._save(board)
            if key in board["final"]:
                return board["final"][key][0]
            return board["live"].get(key, [RUNNING, ""])[0]

    def _refresh(self, board: dict[str, Any], asked: str) -> None:
        known = self.registered()
        # Only the jobs of the invocation that asked: jobs of an earlier run (qdel'ed by its
        # Ctrl-C, or finished after it ended) are none of this run's business.
        if short_id(asked) in known:
            current = known[short_id(asked)].get("invocation")
            ids = [
                rec["jobid"]
                for key, rec in known.items()
                if key not in board["final"] and rec.get("invocation") == current
            ]
        else:
            ids = [asked]
        for attempt in range(1, self.site.qstat_retries + 1):
            try:
                jobs, unknown = query_qstat(ids, self.run, timeout=self.site.qstat_timeout)
                break
            except QstatError as err:
                if attempt == self.site.qstat_retries:
                    self.log(asked, RUNNING, f"qstat failed {attempt} times ({err}); will retry")
                    board["time"] = self.clock()
                    return  # keep the last answers; "running" for jobs never seen
                self.sleep(2 ** (attempt - 1))
        board["time"] = self.clock()
        board["live"] = {}
        for jobid in ids:
            key = short_id(jobid)
            if key in jobs:
                board["unknown"].pop(key, None)
                status, reason = classify(jobs[key])
                prev = board["live"].get(key)
                if status == RUNNING:
                    board["live"][key] = [status, reason]
                    if "by the system" in reason and prev != [status, reason]:
                        self.log(jobid, status, reason)
                else:
                    board["final"][key] = [status, reason]
                    if status == FAILED:
                        self.log(jobid, status, reason)
                    if jobs[key].get("job_state") not in FINAL_STATES:  # Can Never Run
                        self._delete(jobid)
            elif jobid in unknown:
                misses = board["unknown"].get(key, 0) + 1
                board["unknown"][key] = misses
                if misses >= self.site.unknown_job_limit:
                    reason = (
                        f"qstat no longer knows the job ({misses} answers in a row); job "
                        "history disabled or expired? (qmgr: set server job_history_enable=True)"
                    )
                    board["final"][key] = [FAILED, reason]
                    self.log(jobid, FAILED, reason)
                else:
                    board["live"][key] = [RUNNING, f"unknown to qstat ({misses}x)"]


# --------------------------------------------------------------------------- entry points


def submit_main(argv: Sequence[str], site_path: str | os.PathLike | None = None) -> int:
    """``submit.py JOBSCRIPT``: print the PBS job id (what cluster-generic expects)."""
    if not argv:
        print("usage: submit.py JOBSCRIPT", file=sys.stderr)
        return 2
    try:
        print(submit(argv[-1], load_site(site_path)))
    except (RuntimeError, ValueError, OSError) as err:
        print(err, file=sys.stderr)
        return 1
    return 0


def status_main(argv: Sequence[str], site_path: str | os.PathLike | None = None) -> int:
    """``status.py JOBID``: print running, success or failed; never exits non-zero."""
    if len(argv) != 1:
        print("usage: status.py JOBID", file=sys.stderr)
        return 2
    try:
        print(StatusBoard(load_site(site_path)).status(argv[0]))
    except Exception as err:  # a crash here would abort the whole workflow
        print(
            f"PBS status check for {argv[0]} failed ({err!r}); reporting running", file=sys.stderr
        )
        print(RUNNING)
    return 0


def cancel_main(argv: Sequence[str], run: Runner = _run) -> int:
    """``cancel.py JOBID...``: qdel the jobs (Snakemake calls this on Ctrl-C)."""
    if not argv:
        return 0
    proc = run(["qdel", *argv], timeout=30)
    if proc.returncode:
        print(f"qdel exit {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)
    return proc.returncode
