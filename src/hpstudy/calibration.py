"""Seconds per training step on a device: a short calibration, cached per machine.

For every run shape (model, input size, channels, outputs, batch size, task) hpstudy.cost
needs two numbers:

- FLOPs of one training sample (forward + backward), counted by torch.utils.flop_counter on
  the real model at the study's image size (device independent, cached);
- seconds of one optimizer step at the run's batch size on *this* machine: a few real
  training steps (random data of the right shape, the real model and optimizer), cached per
  machine, device and thread count in ``~/.cache/hpstudy/calibration.json``
  (``HPSTUDY_CACHE_DIR`` moves it).

A *device profile* (``hpstudy calibrate``, run on a GPU node: hpstudy.cost.calibrate) is the
same file with one machine's entries, read instead of measuring here.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

CALIBRATION_STEPS = 4  # timed optimizer steps per shape, after one warm-up step
CALIBRATION_SECONDS = 2.0  # ... or fewer when they take longer than this
# On a CPU the time per sample hardly depends on the batch size (quick study, 64 px:
# 21-24 ms per sample at batch 16 to 128), so a CPU is calibrated at a small batch and scaled:
# one short measurement per model and image size instead of minutes for batch 256 at 256 px.
# A GPU is calibrated at the run's own batch size (its throughput grows with the batch).
CPU_CALIBRATION_BATCH = 16
STARTUP_KEY = "_startup"  # per machine: seconds to start a train job's Python and torch
STARTUP_JOB_EXTRA_S = 5.0  # + Snakemake's script wrapper, loading the data, FLOP counting
FORMAT = "hpstudy-calibration/1"


@dataclass(frozen=True)
class Shape:
    """What a training step's cost depends on."""

    model: str
    channels: int
    size: int  # the model's input size (upsample_size or the image size)
    outputs: int
    batch_size: int
    task: str

    def key(self) -> str:
        return (
            f"{self.model}-c{self.channels}-px{self.size}-o{self.outputs}"
            f"-bs{self.batch_size}-{self.task}"
        )


def cache_path() -> Path:
    root = os.environ.get("HPSTUDY_CACHE_DIR") or Path.home() / ".cache" / "hpstudy"
    return Path(root) / "calibration.json"


def default_device() -> str:
    """The device a run trains on here (hpstudy.device.pick_device): HPSTUDY_DEVICE when set,
    without importing torch (4 s of a dry run on a loaded machine), else asked of torch."""
    wanted = os.environ.get("HPSTUDY_DEVICE")
    if wanted:
        return wanted
    from hpstudy.device import pick_device

    return str(pick_device())


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_key(device: str, threads: int) -> str:
    """Host, processor (or GPU), device and torch threads: what a calibration holds for."""
    if device.startswith("cuda"):
        import torch

        what = torch.cuda.get_device_name(torch.device(device))
    else:
        what = cpu_name()
    return re.sub(r"\s+", " ", f"{socket.gethostname()} | {what} | {device} | {threads} threads")


def load_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"format": FORMAT, "flops": {}, "machines": {}}
    data.setdefault("flops", {})
    data.setdefault("machines", {})
    return data


def save_file(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _flops_key(shape: Shape) -> str:
    return f"{shape.model}-c{shape.channels}-px{shape.size}-o{shape.outputs}"


def measure(
    shape: Shape, device: str, threads: int, mixed_precision: bool = False
) -> dict[str, float]:
    """A few real training steps of `shape` on `device`: seconds per step, FLOPs per sample."""
    import torch
    import torch.nn.functional as F

    from hpstudy.config import TrainConfig
    from hpstudy.models import build_model, flops_per_sample
    from hpstudy.optim import make_optimizer

    dev = torch.device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_model(shape.model, shape.channels, shape.outputs, shape.size).to(dev)
        cfg = TrainConfig.from_dict(
            {"model": shape.model, "batch_size": shape.batch_size, "seed": 0}
        )
        optimizer = make_optimizer(cfg, model)
        x = torch.randn(shape.batch_size, shape.channels, shape.size, shape.size, device=dev)
        if shape.task == "regression":
            y = torch.randn(shape.batch_size, 1, device=dev)
        else:
            y = torch.randint(0, shape.outputs, (shape.batch_size,), device=dev)
        flops = flops_per_sample(model, x)["flops_train_per_sample"]
        amp = mixed_precision and dev.type == "cuda"

        def step() -> None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            loss = (
                F.mse_loss(out.float(), y)
                if shape.task == "regression"
                else F.cross_entropy(out.float(), y)
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        model.train()
        step()  # warm-up: allocations, kernel selection
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < CALIBRATION_STEPS and (
            len(times) < 2 or time.perf_counter() - start < CALIBRATION_SECONDS
        ):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return {
        "seconds_per_step": statistics.median(times),
        "flops_per_sample": flops,
        "steps_timed": len(times),
        "measured_at": time.time(),
    }


class Calibration:
    """Seconds per training step per shape: measured on this machine (and cached), or read
    from a device profile made elsewhere (never measured then)."""

    def __init__(
        self,
        device: str | None = None,
        threads: int = 1,
        device_profile: str | os.PathLike | None = None,
        path: Path | None = None,
    ):
        self.profile = Path(device_profile) if device_profile else None
        if self.profile is not None:
            data = load_file(self.profile)
            if not data["machines"]:
                raise ValueError(
                    f"{self.profile}: no calibration in this device profile; make "
                    "one with hpstudy calibrate STUDY.yaml --out FILE"
                )
            self.path, self.data = self.profile, data
            self.machine = next(iter(data["machines"]))
            self.device = self.machine.split(" | ")[2] if " | " in self.machine else "cuda"
        else:
            self.path = path or cache_path()
            self.data = load_file(self.path)
            self.device = device or default_device()
            self.machine = machine_key(self.device, threads)
        self.threads = threads
        self.measured: list[str] = []

    @property
    def entries(self) -> dict[str, Any]:
        return self.data["machines"].setdefault(self.machine, {})

    def step(self, shape: Shape, mixed_precision: bool = False) -> dict[str, float]:
        """Seconds per optimizer step (and FLOPs per sample) of `shape` on this device."""
        gpu = self.device.startswith("cuda")
        ref = (
            shape
            if gpu
            else replace(shape, batch_size=min(shape.batch_size, CPU_CALIBRATION_BATCH))
        )
        entry = self._step(ref, mixed_precision and gpu)
        if ref.batch_size != shape.batch_size:
            entry = {
                **entry,
                "seconds_per_step": entry["seconds_per_step"] * shape.batch_size / ref.batch_size,
            }
        return entry

    def _step(self, shape: Shape, amp: bool) -> dict[str, float]:
        key = shape.key() + ("-amp" if amp else "")
        if key in self.entries:
            return self.entries[key]
        if self.profile is not None:
            return self._from_flop_rate(shape)
        entry = measure(shape, self.device, self.threads, amp)
        fresh = load_file(self.path)  # another process may have added entries meanwhile
        fresh["machines"].setdefault(self.machine, {})[key] = entry
        fresh["flops"][_flops_key(shape)] = entry["flops_per_sample"]
        with contextlib.suppress(OSError):
            save_file(self.path, fresh)
        self.data = fresh
        self.measured.append(key)
        return entry

    def startup_s(self) -> float:
        """A train job's fixed start-up here: a fresh `import torch, hpstudy.seeds`, timed
        once per machine (it is long on a loaded machine or a slow shared file system)."""
        entry = self.entries.get(STARTUP_KEY)
        if entry is None and self.profile is None:
            import subprocess

            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", "import torch, torchvision, hpstudy.seeds"],
                check=False,
                capture_output=True,
                timeout=600,
            )
            entry = {"seconds": time.perf_counter() - t0, "measured_at": time.time()}
            fresh = load_file(self.path)
            fresh["machines"].setdefault(self.machine, {})[STARTUP_KEY] = entry
            with contextlib.suppress(OSError):
                save_file(self.path, fresh)
            self.data = fresh
        seconds = entry["seconds"] if entry else 10.0
        return seconds + STARTUP_JOB_EXTRA_S

    def _from_flop_rate(self, shape: Shape) -> dict[str, float]:
        """A shape the device profile lacks: its FLOPs at the profile's median FLOP rate."""
        rates = [
            e["flops_per_sample"] * _bs(k) / e["seconds_per_step"]
            for k, e in self.entries.items()
            if k != STARTUP_KEY and e.get("seconds_per_step")
        ]
        flops = self.data["flops"].get(_flops_key(shape))
        if flops is None:
            flops = measure_flops(shape)
        rate = statistics.median(rates)
        return {
            "seconds_per_step": flops * shape.batch_size / rate,
            "flops_per_sample": flops,
            "from_flop_rate": True,
        }


def _bs(key: str) -> int:
    match = re.search(r"-bs(\d+)-", key)
    return int(match.group(1)) if match else 1


def measure_flops(shape: Shape) -> float:
    import torch

    from hpstudy.models import build_model, flops_per_sample

    model = build_model(shape.model, shape.channels, shape.outputs, shape.size)
    x = torch.randn(2, shape.channels, shape.size, shape.size)
    return flops_per_sample(model, x)["flops_train_per_sample"]
