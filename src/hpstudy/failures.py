"""How a training run stops short: exit statuses, exceptions and the failure note.

A SIGTERM (what PBS and Slurm send before a walltime kill) ends a run with `Interrupted`
after its checkpoint is saved: exit status 143, resumable. A run that cannot finish (out of
memory, an error) writes a failure note beside its checkpoint, outside Snakemake's outputs,
so that a partial report can say why the run is missing; out of memory exits 3, which the
profiles retry with more memory.

Only the standard library at import time: hpstudy.attempts (read by the cluster status
scripts) names these exceptions without importing torch.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpstudy.atomic import write_json

if TYPE_CHECKING:
    import torch

EXIT_INTERRUPTED = 143  # 128 + SIGTERM: "stopped, resumable"
EXIT_OUT_OF_MEMORY = 3  # the run failed for lack of memory; a retry may ask for more


# what a scheduler or a person sends to stop a run: PBS/Slurm before a walltime kill (SIGTERM,
# or SIGUSR1 where a site asks for an early warning), Ctrl-C (SIGINT)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


@contextlib.contextmanager
def stop_signals_to(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Route STOP_SIGNALS to `handler` (which asks the loop to checkpoint and stop) while the
    block runs; the previous handlers come back after it."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Interrupted(Exception):
    """A termination signal arrived; the checkpoint is saved and the run can resume."""


class RunFailed(Exception):
    """The run cannot finish (out of memory). No metrics.json is written, so Snakemake sees a
    failed job, never a result, and `--retries` may rerun it (same config: the checkpoint's
    config hash is checked); the reason is logged and kept in a failure note."""


def failure_note_path(checkpoint: str | Path) -> Path:
    """`checkpoints/{exp}/seed{N}.failed.json`: outside the outputs, so it survives the
    failed job and a partial report can say why the run is missing."""
    return Path(checkpoint).with_suffix(".failed.json")


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    if isinstance(err, torch.OutOfMemoryError | MemoryError):  # CUDA (and new CPU) allocators
        return True
    text = str(err)  # the CPU allocator raises a plain RuntimeError
    return isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )


def describe_failure(err: BaseException, device: torch.device, epoch: int | None) -> str:
    """One line for the log and the failure note. `epoch`: the 0-based epoch in progress,
    None when the run failed before training (loading the data, building the model)."""
    import torch

    from hpstudy.device import peak_memory_mb

    where = (
        f"at epoch {epoch + 1}"
        if epoch is not None
        else "while loading the data and building the model"
    )
    first_line = (str(err).strip().splitlines() or [""])[0][:300]
    if not is_out_of_memory(err):
        return f"{type(err).__name__} {where}: {first_line}"
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**20
        memory = (
            f"{torch.cuda.get_device_name(device)}: peak "
            f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocated of "
            f"{total:.0f} MiB"
        )
    else:
        memory = f"CPU: peak resident {peak_memory_mb(device):.0f} MiB"
    return (
        f"out of memory {where} ({memory}; {type(err).__name__}: {first_line}); give the "
        "job more memory (with --retries the profile asks for more on each attempt) or "
        "lower batch_size / upsample_size in the study; a rerun with the same config "
        "resumes from the last epoch's checkpoint"
    )


def write_failure_note(
    checkpoint: str | Path, err: BaseException, reason: str, config_hash: str
) -> dict[str, Any]:
    note = {
        "status": "failed",
        "reason": reason,
        "error": type(err).__name__,
        "out_of_memory": is_out_of_memory(err),
        "config_hash": config_hash,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(failure_note_path(checkpoint), note)
    return note
