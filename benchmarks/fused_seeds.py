"""Fused seeds against separate runs: runs per minute on one device, side by side (issue 23).

    uv run python benchmarks/fused_seeds.py                    # small sizes: minutes on a CPU
    uv run python benchmarks/fused_seeds.py --image-size 128 --n-images 974 --epochs 6 --amp
                                                               # the bottleneck shape on a GPU

Modes, each at k = 1, 3, 5, 10 (--ks), all in one invocation so that their ratios share the
machine's conditions:
  one run      one seed trained alone by the Trainer: the baseline every ratio divides by
  k processes  k training processes at once on the device, one seed each (what
               HPSTUDY_JOBS_PER_GPU=k does); k = 1 is the baseline itself
  k fused      k seeds as one stacked model in one process (hpstudy.fused, fuse_seeds: true)
  p x fused k  (--combos, e.g. 2x3) p processes at once, each k fused seeds: a study whose
               configurations have k seeds, with p train jobs per GPU

Every mode trains the bottleneck study's model and settings (ResNet_Shallow, AdamW 3e-4, batch
32, no early stopping, diagnostics every 10 steps; bf16 autocast with --amp on CUDA) on
generated images in memory, in fresh processes (`--child`), each with --threads torch
threads. The fused modes and the baseline run one after the other in one process (start-up
paid once); each process batch starts its own. Per row:
  wall_s        the batch's wall time, process start-up included
  runs_per_min  runs / wall (of these short runs: start-up weighs heavily)
  startup_s     process start to the first training step (median over its processes)
  epoch_s       steady wall time of one epoch of the whole group (training + validation;
                median of epochs 2.., over its processes)
  projected     runs/min for --project-epochs long runs: runs / (start-up + E x epoch_s)
  x_one_run     projected runs/min / the one run's, measured in this invocation
The header names the machine, its cores, the load average before and after, torch and the
device. Other processes on a shared machine slow every mode alike only if they are steady:
read the load average.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO / "src"))

FIELDS = (
    "device",
    "image_size",
    "mode",
    "k",
    "runs",
    "wall_s",
    "runs_per_min",
    "startup_s",
    "epoch_s",
    "projected_runs_per_min",
    "x_one_run",
    "peak_mb",
)


def synthetic_data(n: int, size: int, seed: int = 0) -> dict:
    """A prepared-dataset dict as hpstudy.prepare.load_prepared returns it, in memory: random
    1-channel images with a regression target (what the model computes does not depend on
    the pixels), split 70/15/15 like the bottleneck study."""
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, size, size, generator=gen) * 255).to(torch.uint8)
    targets = images.float().mean(dim=(1, 2, 3))
    order = torch.randperm(n, generator=gen).numpy()
    n_train, n_val = int(0.7 * n), int(0.15 * n)
    split = {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }
    pixels = images.float() / 255
    manifest = {
        "task": "regression",
        "num_classes": 0,
        "image_shape": [1, size, size],
        "target_mean": float(targets.mean()),
        "target_std": float(targets.std()),
        "mean": [float(pixels.mean())],
        "std": [float(pixels.std())],
        "content_sha256": f"synthetic-{n}-{size}-{seed}",
    }
    return {"images": images, "targets": targets, "split": split, "manifest": manifest}


def bottleneck_config(batch_size: int, epochs: int, amp: bool, seed: int = 0):
    from hpstudy.config import TrainConfig

    return TrainConfig.from_dict(
        {
            "model": "resnet_shallow",
            "optimizer": "adamw",
            "lr": 3e-4,
            "batch_size": batch_size,
            "epochs": epochs,
            "patience": None,  # every run trains all its epochs
            "mixed_precision": amp,
            "amp_dtype": "bf16",
            "seed": seed,
        }
    )


# -- the child: trains groups of seeds, one after the other, and reports times -------------
class Clock:
    """Trainer callback: when training started and when each epoch of the group ended (the
    first seed's on_epoch_end marks it; a fused group validates all seeds together)."""

    def __init__(self):
        self.start: float | None = None
        self.ends: list[float] = []
        self.first = None

    def on_train_start(self, trainer):
        if self.first is None:
            self.first, self.start = trainer, time.perf_counter()

    def on_epoch_end(self, trainer, row):
        if trainer is self.first:
            self.ends.append(time.perf_counter())


def train_group(spec: dict, group: dict, work: Path) -> dict:
    """Train `group` = {"mode": "one"|"fused", "seeds": [...]} and time it: `setup_s`
    (building the Trainers: models, FLOP counts, data on the device), `train_s` (first
    step to the end, test and files included) and each epoch of the group."""
    import torch

    from hpstudy import train
    from hpstudy.device import peak_memory_mb, pick_device
    from hpstudy.fused import FusedTrainer

    data = synthetic_data(spec["n_images"], spec["image_size"])
    cfgs = [
        bottleneck_config(spec["batch_size"], spec["epochs"], spec["amp"], seed)
        for seed in group["seeds"]
    ]
    clock = Clock()
    train.CALLBACKS.append(clock)
    t0 = time.perf_counter()
    try:
        dirs = [work / f"{group['mode']}-{len(cfgs)}-seed{c.seed}" for c in cfgs]
        if group["mode"] == "fused":
            checkpoints = [d.with_suffix(".pt") for d in dirs]
            trainer = FusedTrainer(cfgs, None, dirs, checkpoints, lambda m: None, data)
        else:
            (cfg,), (out,) = cfgs, dirs
            trainer = train.Trainer(cfg, None, out, out.with_suffix(".pt"), lambda m: None, data)
        trainer.fit()
    finally:
        train.CALLBACKS.remove(clock)
    end = time.perf_counter()
    starts = [clock.start, *clock.ends[:-1]]
    epochs = [b - a for a, b in zip(starts, clock.ends, strict=True)]
    device = pick_device()
    out = {
        "mode": group["mode"],
        "k": len(cfgs),
        "setup_s": clock.start - t0,
        "train_s": end - clock.start,
        "first_step_wall": time.time() - (end - clock.start),
        "epoch_s": statistics.median(epochs[1:] or epochs),
        "epochs_s": epochs,
        "peak_mb": peak_memory_mb(device),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return out


def child(spec: dict) -> int:
    """One benchmark process: `spec["groups"]` trained one after the other; prints JSON.

    A process with one group reports its true start-up: spawn to first step. A process
    with several (the baseline and the fused groups, to pay the start-up once) first boots
    (imports, CUDA context) and trains a warm-up run of one seed for one epoch, the part
    of a fresh process's start-up spent building its first run; each group's `startup_s`
    is then boot + the warm-up run's set-up + the group's set-up beyond one seed's."""
    import torch

    torch.set_num_threads(spec["threads"])
    groups = spec["groups"]
    with tempfile.TemporaryDirectory() as tmp:
        if len(groups) == 1:
            (result,) = [train_group(spec, groups[0], Path(tmp))]
            result["startup_s"] = result["first_step_wall"] - spec["spawned"]
            print(json.dumps([result]))
            return 0
        import torchvision  # noqa: F401 - ResNet_Shallow's blocks; part of the boot

        import hpstudy.fused  # noqa: F401

        if torch.cuda.is_available() and spec["device"] == "cuda":
            torch.zeros(1, device="cuda")
            torch.cuda.synchronize()
        boot = time.time() - spec["spawned"]
        warm = train_group({**spec, "epochs": 1}, {"mode": "one", "seeds": [99]}, Path(tmp))
        results = [train_group(spec, group, Path(tmp)) for group in groups]
    one = next(r for r in results if r["mode"] == "one")
    for result in results:
        result["startup_s"] = boot + warm["setup_s"] + result["setup_s"] - one["setup_s"]
    print(json.dumps(results))
    return 0


# -- the parent: launches the modes side by side ----------------------------------------------
def launch(spec: dict, groups_per_process: list[list[dict]], device: str) -> tuple[float, list]:
    """Start one process per entry of `groups_per_process` at once; wait for all. Returns
    the wall time and each process's results."""
    env = {**os.environ, "HPSTUDY_DEVICE": device, "OMP_NUM_THREADS": str(spec["threads"])}
    t0 = time.time()
    procs = []
    for groups in groups_per_process:
        child_spec = json.dumps({**spec, "groups": groups, "spawned": time.time()})
        cmd = [sys.executable, __file__, "--child", child_spec]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
            )
        )
    outputs = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a benchmark process failed:\n{err[-3000:]}")
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return time.time() - t0, outputs


def row(
    spec: dict, mode: str, k: int, runs: int, wall: float, groups: list[dict], epochs: int
) -> dict:
    """A table row from the results of the groups that ran at once (one per process)."""
    startup = statistics.median(g["startup_s"] for g in groups)
    epoch = statistics.median(g["epoch_s"] for g in groups)
    projected = runs / (startup + epochs * epoch) * 60
    return {
        "device": spec["device"],
        "image_size": spec["image_size"],
        "mode": mode,
        "k": k,
        "runs": runs,
        "wall_s": wall,
        "runs_per_min": runs / wall * 60,
        "startup_s": startup,
        "epoch_s": epoch,
        "projected_runs_per_min": projected,
        "peak_mb": max(g["peak_mb"] for g in groups),
    }


def measure(
    device: str,
    image_size: int,
    n_images: int,
    epochs: int,
    ks: tuple[int, ...],
    combos: tuple[tuple[int, int], ...] = (),
    batch_size: int = 32,
    amp: bool = False,
    threads: int = 1,
    project_epochs: int = 50,
    say=print,
) -> list[dict]:
    """Every mode at every k on `device` ("cpu" or "cuda"); returns the rows (each also
    passed to `say` as a markdown table line as soon as it is measured)."""
    spec = {
        "device": device,
        "image_size": image_size,
        "n_images": n_images,
        "epochs": epochs,
        "batch_size": batch_size,
        "amp": amp,
        "threads": threads,
    }
    rows: list[dict] = []

    def add(new: dict) -> None:
        base = rows[0]["projected_runs_per_min"] if rows else new["projected_runs_per_min"]
        new["x_one_run"] = new["projected_runs_per_min"] / base
        rows.append(new)
        say(format_row(new))

    # the baseline and every fused k in one process, one after the other (a group's wall
    # is what a fresh process would take: its start-up plus its training); a failure is
    # reported and the other modes are still measured
    groups = [{"mode": "one", "seeds": [0]}]
    groups += [{"mode": "fused", "seeds": list(range(k))} for k in ks]
    fused: dict[int, dict] = {}
    try:
        _, (results,) = launch(spec, [groups], device)
    except RuntimeError as err:
        say(f"fused seeds failed; the baseline runs alone: {err}")
        _, ((results_one,),) = launch(spec, [groups[:1]], device)
        results = [results_one]
    walls = [g["startup_s"] + g["train_s"] for g in results]
    add(row(spec, "one run", 1, 1, walls[0], [results[0]], project_epochs))
    for g, wall in zip(results[1:], walls[1:], strict=True):
        fused[g["k"]] = row(spec, "fused", g["k"], g["k"], wall, [g], project_epochs)

    def at_once(mode: str, k: int, group_mode: str, seeds: list[list[int]]) -> None:
        """One process per seed list, all at once; a failure is printed, not raised."""
        try:
            wall, out = launch(spec, [[{"mode": group_mode, "seeds": s}] for s in seeds], device)
        except RuntimeError as err:
            say(f"{mode} k={k} failed: {err}")
            return
        runs = sum(map(len, seeds))
        add(row(spec, mode, k, runs, wall, [o[0] for o in out], project_epochs))

    for k in ks:  # k processes at once, and the fused row of the same k beside it
        if k > 1:
            at_once("processes", k, "one", [[i] for i in range(k)])
        if k in fused:
            add(fused[k])
    for processes, k in combos:
        seeds = [list(range(p * k, p * k + k)) for p in range(processes)]
        at_once(f"{processes} processes x fused", k, "fused", seeds)
    return rows


def format_row(r: dict) -> str:
    return (
        f"| {r['device']} | {r['image_size']} | {r['mode']} | {r['k']} | {r['runs']} | "
        f"{r['wall_s']:.1f} | {r['runs_per_min']:.2f} | {r['startup_s']:.1f} | "
        f"{r['epoch_s']:.3f} | {r['projected_runs_per_min']:.2f} | "
        f"**{r['x_one_run']:.2f}** | {r['peak_mb']:.0f} |"
    )


TABLE_HEAD = (
    "| device | px | mode | k | runs | wall s | runs/min | start-up s | epoch s | "
    "projected runs/min | x one run | peak MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def machine_header(command: str, device: str) -> str:
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"# fused seeds vs separate runs, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
        f"host {platform.node()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at the start; device "
        f"{device} ({name}); torch {torch.__version__}, python {platform.python_version()}\n"
        f"command: {command}"
    )


def parse_combos(text: str) -> tuple[tuple[int, int], ...]:
    """'2x3,4x3' -> ((2, 3), (4, 3)): p processes x k fused seeds."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        p, k = part.lower().split("x")
        out.append((int(p), int(k)))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/fused_seeds.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--ks", default="1,3,5,10", help="seeds / processes per device")
    parser.add_argument("--combos", default="", help="p processes x k fused seeds, e.g. 2x3,4x3")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=96, help="generated images (70%% train)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--project-epochs", type=int, default=50)
    parser.add_argument("--out", type=Path, help="also write the rows to this CSV file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    command = "python benchmarks/fused_seeds.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(machine_header(command, device), flush=True)
    print(
        f"ResNet_Shallow, {args.n_images} images at {args.image_size} px (70% train), batch "
        f"{args.batch_size}, {args.epochs} epochs per run, {args.threads} torch thread(s) per "
        f"process, bf16 autocast {'on' if args.amp and device == 'cuda' else 'off'}; projected "
        f"for {args.project_epochs}-epoch runs\n",
        flush=True,
    )
    print(TABLE_HEAD, flush=True)
    rows = measure(
        device,
        args.image_size,
        args.n_images,
        args.epochs,
        tuple(int(k) for k in args.ks.split(",")),
        parse_combos(args.combos),
        args.batch_size,
        args.amp,
        args.threads,
        args.project_epochs,
        say=lambda line: print(line, flush=True),
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
