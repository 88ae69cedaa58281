#!/usr/bin/env python3
"""GPU check: what one GPU does with the bottleneck study, measured, in under 8 minutes.

    python tools/gpu_check.py              # on a machine with CUDA and PyTorch
    python tools/gpu_check.py --dry-run    # every section at toy sizes on the CPU

Needs only PyTorch, torchvision and NumPy (it puts the repository's src/ and benchmarks/ on
sys.path; no Snakemake, no network, no dataset: the 974 images are generated in memory).
Sections, in this order, each printing every number it measured:
  tests      the `gpu`-marked tests (when pytest is installed), among them fused seeds against
             separate runs on CUDA (tests/test_fused.py)
  experiment one bottleneck experiment (ResNet_Shallow, AdamW, batch 32, 50 epochs, bf16
             autocast, 974 images: 681 train) at 128 and 256 px, and the 35 x 3 study estimate
  seeds      benchmarks/fused_seeds.py at 128 and 256 px with bf16: one run, k = 3, 5, 10
             processes on the GPU, k = 1, 3, 5, 10 fused seeds, and 2 and 4 processes of 3
             fused seeds (the study's 3 seeds per configuration); the study's projected time
             for each way, against the 10-minute goal, and the fuse_seeds /
             HPSTUDY_JOBS_PER_GPU defaults those numbers choose
  compile    eager vs torch.compile vs torch.compile(mode="reduce-overhead") (CUDA graphs):
             steady epoch time, compile cost, and the decision for a 50-epoch run
  sharing    (only when named in --sections; `seeds` measures processes too) 1, 2, 4 and 8
             runs at once on the one GPU (separate processes): runs per minute
A section that would start after --budget seconds (default 420; compile and sharing need 120
and 60 s of it left) is skipped with a line saying so, so that the whole check stays under 8
minutes. Without CUDA (and without
--dry-run) it says so and exits 0; without torchvision (ResNet_Shallow is built from its
BasicBlock) it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))  # fused_seeds: the seeds section

FULL = {
    "n_images": 974,
    "sizes": (128, 256),
    "epochs": 50,
    "batch_size": 32,
    "sharing": (1, 2, 4, 8),
    "sharing_epochs": 10,
    "compile_epochs": 8,
    "study_runs": 35 * 3,
    "seed_ks": (1, 3, 5, 10),
    "seed_combos": ((2, 3), (4, 3)),  # p processes x 3 fused seeds
    "seed_epochs": 4,  # the steady epoch: median of epochs 2-4
    "study_seeds": 3,
}
DRY = {
    "n_images": 40,
    "sizes": (32,),
    "epochs": 2,
    "batch_size": 8,
    "sharing": (1, 2),
    "sharing_epochs": 1,
    "compile_epochs": 3,
    "study_runs": 35 * 3,
    "seed_ks": (1, 2),
    "seed_combos": ((2, 2),),
    "seed_epochs": 2,
    "study_seeds": 2,
}


def say(*parts) -> None:
    print(*parts, flush=True)


def synthetic_data(n: int, size: int, seed: int = 0) -> dict:
    """A prepared-dataset dict in memory (benchmarks/fused_seeds.py makes it)."""
    from fused_seeds import synthetic_data as make

    return make(n, size, seed)


def bottleneck_config(sizes: dict, **over):
    from hpstudy.config import TrainConfig

    # the bottleneck study's base; no early stopping, so that every run is 50 epochs long
    return TrainConfig.from_dict(
        {
            "model": "resnet_shallow",
            "optimizer": "adamw",
            "lr": 3e-4,
            "batch_size": sizes["batch_size"],
            "epochs": sizes["epochs"],
            "patience": None,
            "mixed_precision": True,
            "amp_dtype": "bf16",
            **over,
        }
    )


def train_once(cfg, data, work: Path, forward=None) -> dict:
    """One run through the real Trainer; returns its metrics and per-epoch times."""
    from hpstudy.train import Trainer

    t0 = time.perf_counter()
    trainer = Trainer(cfg, None, work, work / "ck.pt", lambda m: None, data=data)
    if forward is not None:
        trainer.forward = forward(trainer.model)
    metrics = trainer.fit()
    metrics["run_wall_s"] = time.perf_counter() - t0
    metrics["epoch_times"] = [r["epoch_time_s"] for r in trainer.state.history]
    return metrics


def section_tests(budget_s: float) -> None:
    try:
        import pytest  # noqa: F401
    except ImportError:
        say("tests: skipped (pytest is not installed)")
        return
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        # a test module whose imports the GPU machine lacks (no Snakemake there) must not
        # keep the gpu tests of the others from running
        "--continue-on-collection-errors",
        str(REPO / "tests"),
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=budget_s,
            env={**os.environ, "HPSTUDY_DEVICE": "cuda"},
        )
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        say(f"tests: pytest -m gpu exit {proc.returncode} in {time.perf_counter() - t0:.1f} s")
    except subprocess.TimeoutExpired:
        tail = []
        say(f"tests: pytest -m gpu stopped after {budget_s:.0f} s")
    for line in tail:
        say(f"  {line}")


def section_experiment(sizes: dict, work: Path) -> dict[int, dict]:
    out = {}
    for size in sizes["sizes"]:
        data = synthetic_data(sizes["n_images"], size)
        cfg = bottleneck_config(sizes)
        m = train_once(cfg, data, work / f"exp-{size}")
        times = m["epoch_times"]
        steady = sorted(times[1:] or times)[len(times[1:] or times) // 2]
        out[size] = m
        say(
            f"experiment {size}px: {m['epochs_run']} epochs, {m['optimizer_steps']} steps, "
            f"run wall {m['run_wall_s']:.2f} s, train {m['train_time_s']:.2f} s, first epoch "
            f"{times[0]:.3f} s, median epoch {steady:.3f} s, "
            f"{m['throughput_samples_per_s']:.0f} img/s, peak {m['peak_memory_mb']:.0f} MiB"
        )
        say(
            f"study estimate {size}px: {sizes['study_runs']} runs x {m['run_wall_s']:.2f} s = "
            f"{sizes['study_runs'] * m['run_wall_s'] / 60:.1f} min one at a time in one process "
            "(plus one process start per configuration; see seeds)"
        )
    return out


def child(args) -> int:
    """One run in its own process (the sharing section starts k of these at once)."""
    sizes = json.loads(args.child)
    data = synthetic_data(sizes["n_images"], sizes["size"], seed=sizes["seed"])
    cfg = bottleneck_config(sizes, epochs=sizes["sharing_epochs"], seed=sizes["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        m = train_once(cfg, data, Path(tmp))
    print(json.dumps({"train_time_s": m["train_time_s"], "run_wall_s": m["run_wall_s"]}))
    return 0


def section_sharing(sizes: dict, size: int) -> None:
    base = None
    for k in sizes["sharing"]:
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    json.dumps({**sizes, "size": size, "seed": i, "sizes": None}),
                ]
                + (["--dry-run"] if sizes is DRY else []),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(k)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                say(f"sharing k={k}: a run failed: {err.strip().splitlines()[-1:]}")
                return
            results.append(json.loads(out.strip().splitlines()[-1]))
        wall = time.perf_counter() - t0
        rate = k / wall * 60
        base = rate if base is None else base
        say(
            f"sharing k={k} at {size}px: {k} runs of {sizes['sharing_epochs']} epochs in "
            f"{wall:.2f} s (process start included): {rate:.1f} runs/min, "
            f"{rate / base:.2f}x one at a time; train time per run "
            + ", ".join(f"{r['train_time_s']:.2f}" for r in results)
            + " s"
        )


def section_seeds(sizes: dict, device: str, deadline: float) -> None:
    """Fused seeds against separate processes (benchmarks/fused_seeds.py) at each size, and
    what they make of the bottleneck study: its projected time on this GPU and the defaults."""
    import fused_seeds

    say(fused_seeds.TABLE_HEAD)
    for size in sizes["sizes"]:
        if time.perf_counter() > deadline:
            say(f"seeds {size}px: skipped (past --budget)")
            continue
        try:
            rows = fused_seeds.measure(
                device,
                size,
                sizes["n_images"],
                sizes["seed_epochs"],
                sizes["seed_ks"],
                sizes["seed_combos"],
                sizes["batch_size"],
                amp=True,
                threads=1,
                project_epochs=FULL["epochs"],
                say=say,
            )
        except Exception as err:  # a failing mode is a finding: say it, measure the rest
            say(f"seeds {size}px: failed: {type(err).__name__}: {str(err)[-1500:]}")
            continue
        study_decision(rows, sizes, size)


def study_decision(rows: list[dict], sizes: dict, size: int) -> None:
    """The study's time for each way of running it that its seeds allow (one run at a time,
    k processes, its seeds fused, processes of its fused seeds), best first, and the
    profile defaults that way means."""
    runs, seeds = sizes["study_runs"], sizes["study_seeds"]
    usable = [
        r
        for r in rows
        if r["mode"] in ("one run", "processes") or (r["k"] == seeds and "fused" in r["mode"])
    ]
    for r in sorted(usable, key=lambda r: -r["projected_runs_per_min"]):
        minutes = runs / r["projected_runs_per_min"]
        say(
            f"study {size}px: {runs} runs of {FULL['epochs']} epochs as {r['mode']} "
            f"(k={r['k']}): {minutes:.1f} min projected "
            f"({'meets' if minutes <= 10 else 'misses'} the 10-minute goal"
            f"{', and the 2-minute stretch' if minutes <= 2 else ''})"
        )
    best = max(usable, key=lambda r: r["projected_runs_per_min"])
    fuse = "fused" in best["mode"]
    jobs = {"one run": 1, "processes": best["k"], "fused": 1}.get(best["mode"])
    if jobs is None:  # "p processes x fused"
        jobs = best["runs"] // best["k"]
    say(
        f"decision {size}px: fuse_seeds: {'true' if fuse else 'false'}, "
        f"HPSTUDY_JOBS_PER_GPU={jobs} ({best['mode']}, k={best['k']}: "
        f"{best['projected_runs_per_min']:.1f} runs/min, {best['x_one_run']:.2f}x one run)"
    )


def section_compile(sizes: dict, size: int, work: Path, device: str) -> None:
    import torch

    data = synthetic_data(sizes["n_images"], size)
    cfg = bottleneck_config(sizes, epochs=sizes["compile_epochs"])
    variants = {
        "eager": None,
        "compile": lambda model: torch.compile(model),
        "cuda_graphs": lambda model: torch.compile(model, mode="reduce-overhead"),
    }
    if device != "cuda":
        variants.pop("cuda_graphs")  # CUDA graphs need CUDA
    results = {}
    for name, forward in variants.items():
        try:
            m = train_once(cfg, data, work / f"compile-{name}", forward)
        except Exception as err:  # no triton, an unsupported op, ...
            say(f"compile {name}: failed: {type(err).__name__}: {str(err)[:200]}")
            continue
        times = m["epoch_times"]
        steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
        results[name] = (steady, times[0] - steady)
        say(
            f"compile {name} {size}px: median steady epoch {steady:.4f} s, first epoch "
            f"{times[0]:.3f} s (compile/warm-up cost {times[0] - steady:.3f} s)"
        )
    if "eager" not in results:
        return
    eager_epoch, eager_warm = results["eager"]
    for name in ("compile", "cuda_graphs"):
        if name not in results:
            continue
        epoch, warm = results[name]
        gain = (eager_epoch - epoch) * FULL["epochs"] - (warm - eager_warm)
        say(
            f"decision {name}: {'USE' if gain > 0 else 'do not use'} "
            f"(a {FULL['epochs']}-epoch run saves {gain:+.2f} s: "
            f"{eager_epoch - epoch:+.4f} s/epoch, {warm - eager_warm:+.2f} s more warm-up)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/gpu_check.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="every section at toy sizes on the CPU (checks the script itself)",
    )
    parser.add_argument(
        "--sections",
        default="tests,experiment,seeds,compile",
        help="comma-separated subset of tests,experiment,seeds,compile,sharing",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=420.0,
        help="seconds after which no further section starts (default 420)",
    )
    parser.add_argument(
        "--tests-budget",
        type=float,
        default=120.0,
        help="seconds the gpu-marked tests may take (default 120)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    if args.child:
        os.environ.setdefault("HPSTUDY_DEVICE", "cpu" if args.dry_run else "cuda")
        return child(args)
    try:
        import torchvision  # noqa: F401 - ResNet_Shallow is built from its BasicBlock
    except ImportError:
        say(
            "gpu_check: torchvision is not installed; ResNet_Shallow needs it (pip install "
            "torchvision matching this torch)"
        )
        return 2
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        say(
            f"gpu_check: no CUDA device (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False): nothing to measure; run it on a GPU "
            "machine, or with --dry-run to exercise it on the CPU"
        )
        return 0
    device = "cuda" if cuda and not args.dry_run else "cpu"
    os.environ["HPSTUDY_DEVICE"] = device
    sizes = DRY if args.dry_run else FULL
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    started = time.perf_counter()
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    say(
        f"gpu_check: {name}, torch {torch.__version__}, python {sys.version.split()[0]}, "
        f"sizes {'dry run' if args.dry_run else 'full'}"
    )
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    deadline = started + args.budget

    # what a section needs at least, so that one started late does not overrun the budget
    needs = {"tests": 0, "experiment": 0, "seeds": 0, "compile": 120, "sharing": 60}

    def due(section: str) -> bool:
        if section not in sections:
            return False
        if time.perf_counter() + (0 if args.dry_run else needs[section]) > deadline:
            left = deadline - time.perf_counter()
            say(f"{section}: skipped ({left:.0f} s left of --budget {args.budget:.0f} s)")
            return False
        return True

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.dry_run and due("tests"):
            section_tests(args.tests_budget)
        if due("experiment"):
            section_experiment(sizes, work)
        if due("seeds"):
            section_seeds(sizes, device, deadline)
        if due("compile"):
            section_compile(sizes, sizes["sizes"][-1], work, device)
        if due("sharing"):
            section_sharing(sizes, sizes["sizes"][-1])
    say(f"gpu_check: done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
