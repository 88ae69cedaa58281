"""GPU slots for a workstation: give each training job its own GPU, or a fair share of one.

Snakemake's local executor limits how many training jobs run at once (profiles/local sets the
global resource `gpu` to the number of slots and every `train` job asks for `gpu=1`), but it
cannot tell a job *which* device to use. `claim()` does: called at the start of a training
process, before CUDA is initialised, it picks the visible GPU with the fewest current holders,
takes a lock file for a slot on it and sets `CUDA_VISIBLE_DEVICES` to that one device.

The lock is an `fcntl.flock` on a file in a per-user directory, held by the open file for the
life of the process and released by the kernel when the process ends, however it ends
(SIGKILL and OOM kills included), so a slot is never left taken by a dead job. Choosing and
taking a slot happen under one directory-wide lock, so jobs that start together spread over
the GPUs instead of piling onto the first.

Inside a PBS or Slurm job the devices handed out are the GPUs the scheduler gave the job:
CUDA_VISIBLE_DEVICES when the scheduler set it (PBS with its cgroups hook, Slurm with gres),
else the first HPSTUDY_JOB_GPUS of the node (profiles/pbs passes the job's GPU count with
`qsub -v`). A job packing k runs (`--groups`) on k GPUs so puts each run on its own GPU; a
job with one GPU is left alone. The lock files are per job there.

Environment:
  HPSTUDY_GPU_SLOTS      auto (default), on or off. `auto` acts on a workstation and, inside
                         a Slurm or PBS job, when the job holds more than one GPU.
  HPSTUDY_JOB_GPUS       GPUs of the batch job (set by profiles/pbs at submission).
  HPSTUDY_JOBS_PER_GPU   training jobs that share one GPU (default 1); read by slot_count(),
                         which profiles/local uses for the global `gpu` resource.
  HPSTUDY_GPU_LOCK_DIR   where the lock files live (default /tmp/hpstudy-gpuslots-<uid>).
  CUDA_VISIBLE_DEVICES   if set when Snakemake starts, only these devices are handed out.

Command line: `hpstudy gpuslots count|status`, and `hpstudy gpuslots run -- CMD ...` to run
any command in a claimed slot (hpstudy.cli).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MODES = ("auto", "on", "off")
BATCH_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID")
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


class GpuSlotError(RuntimeError):
    """The slot configuration is invalid (bad mode, bad jobs-per-GPU, unusable lock dir)."""


@dataclass
class GpuClaim:
    """A held slot: `device` is what CUDA_VISIBLE_DEVICES was set to."""

    device: str
    slot: int
    path: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the flock
            self.fd = None

    def __enter__(self) -> GpuClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def visible_gpus(env: Mapping[str, str] | None = None, proc_dir: Path = NVIDIA_PROC) -> list[str]:
    """The devices jobs may use: CUDA_VISIBLE_DEVICES if set, else every NVIDIA GPU found.

    Detection reads /proc/driver/nvidia/gpus (one entry per GPU), then `nvidia-smi -L`; it
    never initialises CUDA, so the caller can still narrow CUDA_VISIBLE_DEVICES afterwards.
    """
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        devices = [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",")]
        # CUDA stops at the first invalid entry ("-1" is the usual way to hide all GPUs)
        out = []
        for d in devices:
            if not d or d.startswith("-"):
                break
            out.append(d)
        return out
    count = 0
    if proc_dir.is_dir():
        count = sum(1 for _ in proc_dir.iterdir())
    elif shutil.which("nvidia-smi"):
        try:
            res = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
            )
            count = sum(1 for line in res.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            count = 0
    return [str(i) for i in range(count)]


def jobs_per_gpu(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get("HPSTUDY_JOBS_PER_GPU", "1")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise GpuSlotError(f"HPSTUDY_JOBS_PER_GPU must be an integer >= 1, got {raw!r}")
    return value


def slot_count(env: Mapping[str, str] | None = None, proc_dir: Path = NVIDIA_PROC) -> int:
    """How many training jobs may run at once: GPUs x jobs per GPU.

    Without a GPU, training runs on the CPU and the slots stop being the limit: the count is
    the number of CPU cores, so `--cores` and the jobs' threads decide.
    """
    n = len(visible_gpus(env, proc_dir))
    if n == 0:
        return os.cpu_count() or 1
    return n * jobs_per_gpu(env)


def mode(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    value = env.get("HPSTUDY_GPU_SLOTS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise GpuSlotError(f"HPSTUDY_GPU_SLOTS must be one of {', '.join(MODES)}, got {value!r}")
    return value


def batch_job_id(env: Mapping[str, str] | None = None) -> str | None:
    """The PBS or Slurm job this process runs in, if any."""
    env = os.environ if env is None else env
    return next((env[var] for var in BATCH_JOB_VARS if env.get(var)), None)


def job_gpus(env: Mapping[str, str] | None = None, proc_dir: Path = NVIDIA_PROC) -> list[str]:
    """The GPUs runs may use: on a workstation every visible GPU; inside a batch job those
    the scheduler assigned (CUDA_VISIBLE_DEVICES), else the first HPSTUDY_JOB_GPUS found."""
    env = os.environ if env is None else env
    devices = visible_gpus(env, proc_dir)
    if batch_job_id(env) and "CUDA_VISIBLE_DEVICES" not in env and env.get("HPSTUDY_JOB_GPUS"):
        try:
            devices = devices[: max(int(env["HPSTUDY_JOB_GPUS"]), 0)]
        except ValueError:
            pass
    return devices


def active(env: Mapping[str, str] | None = None, devices: Sequence[str] | None = None) -> bool:
    """Whether claim() assigns a device here (see HPSTUDY_GPU_SLOTS): in `auto` mode on a
    workstation, and inside a batch job only when it holds several GPUs to spread runs over."""
    env = os.environ if env is None else env
    m = mode(env)
    if m == "auto":
        if not batch_job_id(env):
            return True
        devices = job_gpus(env) if devices is None else devices
        return len(devices) > 1
    return m == "on"


def default_lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """Per user; inside a batch job per job too (its GPUs are its own)."""
    env = os.environ if env is None else env
    if env.get("HPSTUDY_GPU_LOCK_DIR"):
        return Path(env["HPSTUDY_GPU_LOCK_DIR"])
    job = batch_job_id(env)
    suffix = "-job" + re.sub(r"[^A-Za-z0-9_.-]", "_", job) if job else ""
    return Path("/tmp") / f"hpstudy-gpuslots-{os.getuid()}{suffix}"


def _key(device: str) -> str:
    """A file-name-safe name for a device (an index or a GPU-/MIG- UUID)."""
    return "gpu" + re.sub(r"[^A-Za-z0-9_.-]", "_", device)


def _is_held(path: Path) -> bool:
    """True if another open file holds an flock on `path`."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # also drops the probe's own lock
    return False


def _slot_files(lock_dir: Path, device: str) -> list[Path]:
    return sorted(lock_dir.glob(f"{_key(device)}.*.lock"))


def holders(lock_dir: Path, devices: Sequence[str]) -> dict[str, int]:
    """Number of live holders per device."""
    return {d: sum(_is_held(p) for p in _slot_files(lock_dir, d)) for d in devices}


def _take_free_slot(lock_dir: Path, device: str) -> tuple[int, Path, int]:
    slot = 0
    while True:
        path = lock_dir / f"{_key(device)}.{slot}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                slot += 1
                continue
            raise
        os.ftruncate(fd, 0)
        info = f"pid={os.getpid()} host={socket.gethostname()} since={time.time():.0f}\n"
        os.write(fd, info.encode())
        return slot, path, fd


def claim(
    env: MutableMapping[str, str] | None = None,
    lock_dir: Path | None = None,
    devices: Sequence[str] | None = None,
) -> GpuClaim | None:
    """Take the least-used visible GPU for this process and point CUDA_VISIBLE_DEVICES at it.

    Call it before anything initialises CUDA (before the first `torch.cuda` call; importing
    torch is fine). Returns None, changing nothing, when slots are off for this process (see
    `active`) or no GPU is visible. Never blocks on busy GPUs: how many jobs run at once is
    Snakemake's business (the `gpu` resource); this only spreads them. The lock is held until
    the process exits or `release()` is called; keep the returned object if you release early.
    """
    env = os.environ if env is None else env
    devices = list(job_gpus(env) if devices is None else devices)
    if not devices or not active(env, devices):
        return None
    lock_dir = default_lock_dir(env) if lock_dir is None else Path(lock_dir)
    try:
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise GpuSlotError(f"cannot create the GPU slot lock directory {lock_dir}: {e}") from e
    mutex = os.open(lock_dir / "allocate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(mutex, fcntl.LOCK_EX)  # held only while choosing: milliseconds
        load = holders(lock_dir, devices)
        device = min(devices, key=lambda d: (load[d], devices.index(d)))
        slot, path, fd = _take_free_slot(lock_dir, device)
    finally:
        os.close(mutex)
    env["CUDA_VISIBLE_DEVICES"] = device
    return GpuClaim(device=device, slot=slot, path=path, fd=fd)


def status_text() -> str:
    """The mode, the lock folder, the slot count and the jobs holding each visible GPU."""
    devices = visible_gpus()
    lock_dir = default_lock_dir()
    lines = [f"mode={mode()} active={active()} lock_dir={lock_dir} slots={slot_count()}"]
    if not devices:
        return "\n".join([*lines, "no GPU visible"])
    lines += [f"GPU {device}: {n} job(s)" for device, n in holders(lock_dir, devices).items()]
    return "\n".join(lines)


def exec_in_slot(cmd: Sequence[str]) -> None:
    """Claim a slot, then replace this process by `cmd`, which keeps holding the lock (the
    locked file stays open across exec) until it ends."""
    held = claim()
    if held is not None and held.fd is not None:
        os.set_inheritable(held.fd, True)  # the lock lives on in the exec'd command
        print(f"gpuslots: CUDA_VISIBLE_DEVICES={held.device} (slot {held.slot})", file=sys.stderr)
    os.execvp(cmd[0], list(cmd))
