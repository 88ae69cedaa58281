"""The device a run trains on, and what it used there.

`pick_device()` honours HPSTUDY_DEVICE (tests pin the CPU; a GPU node may name `cuda:1`),
else takes CUDA when present. Every code path runs on both; what a device ignores (mixed
precision, channels_last, pinned memory on a CPU) is decided by `config.device_effects`.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from typing import Any

import torch


def pick_device() -> torch.device:
    wanted = os.environ.get("HPSTUDY_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synced_clock(device: torch.device) -> float:
    """time.perf_counter() once the device has finished its queued work (CUDA runs
    asynchronously: without the sync an epoch's time would miss its last kernels)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def device_name(device: torch.device) -> str:
    """The GPU's name, else the processor's (for metrics.json and the report)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or "cpu"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_kind(device: torch.device) -> str:
    return "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"


def attempt_resources() -> dict[str, Any]:
    """What an attempt runs on, for its record: CPU threads (the job's Snakemake threads,
    set by the train script; else torch's default), the device, and on a GPU the one
    CUDA_VISIBLE_DEVICES names (hpstudy.gpuslots), else its index."""
    device = pick_device()
    gpu = None
    if device.type == "cuda":
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or str(device.index or 0)
    return {"threads": torch.get_num_threads(), "device": device.type, "gpu": gpu}
