"""The qsub command line of one Snakemake job: the only place it is built.

One chunk ``select=1:ncpus=<threads>:mem=<mem_mb>mb[:ngpus=<n>[:<gpu flavour>]][:<chunk>]``,
``-l walltime`` from the ``runtime`` resource (minutes), queue, account, project and extra
arguments from the settings, ``-j oe`` (one output file with stdout and stderr) and
``-o`` naming that file.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import ExecutorSettings

GPU_RESOURCES = ("ngpus", "gpu", "gpus")  # the first one a job sets counts its GPUs
# qsub failures worth retrying: the server is restarting, busy or unreachable.
TRANSIENT = re.compile(
    r"connect|timed? ?out|temporar|try again|communication|end of file|no route|refused|busy",
    re.IGNORECASE,
)


@dataclass
class JobRequest:
    """What PBS needs to know about one Snakemake job (single or group)."""

    rule: str  # rule name, or the group's name
    wildcards: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    group_id: str | None = None  # a group job's id (its PBS name then uses the first 8 chars)

    @property
    def name(self) -> str:
        """A PBS job name: rule and wildcard values (group: name and id), PBS-safe."""
        if self.group_id:
            parts = [self.rule, self.group_id[:8]]
        else:
            parts = [self.rule, *(str(v) for v in self.wildcards.values())]
        name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", ".".join(parts))
        if not name[:1].isalpha():  # PBS job names start with a letter
            name = "j" + name
        return name[:100]

    @property
    def gpus(self) -> int:
        for key in GPU_RESOURCES:
            if self.resources.get(key) not in (None, ""):
                return int(self.resources[key])
        return 0

    @property
    def ncpus(self) -> int:
        return max(int(self.threads or 1), int(self.resources.get("cpus") or 0), 1)


def walltime(minutes: float) -> str:
    """Snakemake ``runtime`` (minutes) as PBS ``HH:MM:SS``."""
    seconds = max(1, round(float(minutes) * 60))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def output_path(request: JobRequest, logdir: Path, stamp: str) -> Path:
    """Where PBS writes the job's output: ``<logdir>/<rule>/<name>.<stamp>.<attempt>.out``."""
    return Path(logdir) / request.rule / f"{request.name}.{stamp}.{request.attempt}.out"


def qsub_command(
    request: JobRequest,
    settings: ExecutorSettings,
    jobscript: str,
    output: Path,
    mem_mb: int | None = None,
    submitted: float | None = None,
    envvars: Sequence[str] = (),
) -> list[str]:
    """The qsub arguments for one job. ``mem_mb`` replaces the job's own (memory grown after
    a memory failure); ``submitted`` (Unix seconds) goes to ``settings.submit_time_var``;
    ``envvars`` are passed by name when the environment is not exported as a whole."""
    res = request.resources
    mem_mb = mem_mb if mem_mb is not None else res.get("mem_mb")
    chunk = ["select=1", f"ncpus={request.ncpus}"]
    if mem_mb:
        chunk.append(f"mem={int(mem_mb)}mb")
    gpus = request.gpus
    if gpus:
        chunk.append(f"{settings.gpu_resource}={gpus}")
        if settings.gpu_chunk:
            chunk.append(settings.gpu_chunk.strip(":"))
    if settings.chunk:
        chunk.append(settings.chunk.strip(":"))

    args = ["qsub", "-N", request.name, "-l", ":".join(chunk)]
    if res.get("runtime"):
        minutes = float(res["runtime"])
        if settings.max_walltime:
            minutes = min(minutes, float(settings.max_walltime))
        args += ["-l", f"walltime={walltime(minutes)}"]
    queue = (settings.gpu_queue or settings.queue) if gpus else settings.queue
    if queue:
        args += ["-q", queue]
    if settings.account:
        args += ["-A", settings.account]
    if settings.project:
        args += ["-P", settings.project]
    args += ["-j", "oe", "-o", str(Path(output).resolve())]
    variables = []
    if settings.no_export_env:
        variables += list(envvars)  # -v NAME: the value qsub sees
    else:
        args.append("-V")
    if settings.submit_time_var:
        now = time.time() if submitted is None else submitted
        variables.append(f"{settings.submit_time_var}={now:.0f}")
    if gpus and settings.gpus_var:
        variables.append(f"{settings.gpus_var}={gpus}")
    if variables:
        args += ["-v", ",".join(variables)]  # one -v: a comma-separated list
    args += shlex.split(settings.extra_args or "")
    args.append(str(jobscript))
    return args


Runner = Callable[..., subprocess.CompletedProcess]


def run(args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


class SubmitError(RuntimeError):
    """qsub refused the job, or the server stayed unreachable."""


def qsub(
    args: Sequence[str],
    retry_seconds: float,
    runner: Runner = run,
    sleep: Callable[[float], None] = time.sleep,
    warn: Callable[[str], None] = print,
) -> str:
    """Run qsub, return the job id. While the server is unreachable (restart, overload) qsub
    is retried with back-off for up to ``retry_seconds``; a rejection fails at once."""
    waited, delay = 0.0, 2.0
    while True:
        try:
            proc = runner(args, timeout=120)
        except subprocess.TimeoutExpired as err:
            proc = subprocess.CompletedProcess(args, 124, "", f"qsub timed out: {err}")
        except OSError as err:  # qsub not on PATH
            raise SubmitError(f"qsub could not run: {err}") from err
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0].strip()
        error = (proc.stderr or "").strip()
        if waited >= retry_seconds or not TRANSIENT.search(error):
            raise SubmitError(
                f"qsub failed (exit {proc.returncode}): {error}\ncommand: {shlex.join(args)}"
            )
        warn(f"qsub: {error}; retrying in {delay:.0f} s")
        sleep(delay)
        waited += delay
        delay = min(2 * delay, 60.0)
