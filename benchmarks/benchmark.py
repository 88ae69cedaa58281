"""What an experiment costs beyond its compute, measured side by side on this machine.

    python benchmarks/benchmark.py --quick      # reduced sizes, a few minutes on a laptop CPU (CI)
    python benchmarks/benchmark.py --full       # the bottleneck study's settings: 974 images at its
                                             # image size (256 px), batch 32

Sections (each row: section, case, metric, value, unit, note):
  data      images/s of the device-resident path and of the DataLoader path with 0/2/4
            workers, data only (load + normalise + augment, no model)
  train     the same paths in full training steps of the real Trainer loop
  loop      training-loop efficiency: forward+backward+optimizer step on a batch already in
            memory, divided by the real Trainer loop's time per optimizer step (1.0 = no
            overhead)
  overhead  per-job fixed cost: a real `python workflow/scripts/train.py` from process start to
            its first training step, and its parts (interpreter, import torch, torchvision,
            hpstudy.train, load prepared, build model, FLOP counting)
  dag       `snakemake -n` wall time for generated studies of N experiments
  gpu       (CUDA only) one bottleneck experiment, the whole study estimate, ResNet-18 epoch
  workflow  (only when asked for) the quick study end to end through Snakemake, for this tree
            and for --base (a git revision, checked out in a temporary worktree) side by
            side: wall time, train jobs spawned, and the per-run fixed overhead = (sum of the
            train jobs' wall time - sum of the runs' training time) / runs
  main      (only when named in --sections: it takes the study's time) the README's main job,
            `snakemake --cores all` of the default study from an empty results folder, timed
            next to the cost estimate the workflow prints at its start

Prints a markdown table and writes `benchmark-<mode>.csv` and `.md` to --out
(default reports/benchmarks/). Numbers are never asserted on; the machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO / "src"))
SECTIONS = ("data", "train", "loop", "overhead", "dag", "gpu", "workflow", "main")
# `workflow` runs the quick study twice and `main` the README's main job: ask for them
DEFAULT_SECTIONS = SECTIONS[:-2]
FIELDS = ("section", "case", "metric", "value", "unit", "note")


@dataclass(frozen=True)
class Settings:
    mode: str
    image_size: int  # pixels per side of the prepared images
    n_images: int  # prepared images (the bottleneck study: 974)
    batch_size: int = 32
    workers: tuple[int, ...] = (0, 2, 4)
    data_seconds: float = 3.0  # least time per data-only measurement
    train_batches: int = 8  # optimizer steps per epoch in the training measurements
    train_epochs: int = 3  # the first one is warm-up
    dag_sizes: tuple[int, ...] = (100, 1_000, 10_000)
    augment: tuple[str, ...] = ()  # the bottleneck study trains without augmentation
    gpu_epochs: int = 50
    gpu_seeds: int = 3
    gpu_study_experiments: int = 35
    bytecode_cache: bool = True  # also time start-up with a warm bytecode cache


QUICK = Settings(
    "quick",
    image_size=32,
    n_images=96,
    workers=(0, 2),
    data_seconds=0.5,
    train_batches=2,
    train_epochs=2,
    dag_sizes=(10, 100),
    gpu_epochs=2,
    bytecode_cache=False,
)


def bottleneck_image_size(default: int = 256) -> int:
    """The image size of config/studies/bottleneck.yaml (256 px, as the lab report's)."""
    import yaml

    path = REPO / "config" / "studies" / "bottleneck.yaml"
    try:
        return int(yaml.safe_load(path.read_text())["dataset"]["image_size"])
    except (OSError, KeyError, TypeError, ValueError):
        return default


FULL = Settings("full", image_size=bottleneck_image_size(), n_images=974, train_epochs=4)


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(
        self, section: str, case: str, metric: str, value, unit: str = "", note: str = ""
    ) -> None:
        if isinstance(value, float) and math.isfinite(value):
            value = float(f"{value:.4g}")
        row = dict(zip(FIELDS, (section, case, metric, value, unit, note), strict=True))
        self.rows.append(row)  # printed once, as the markdown table at the end

    def markdown(self, header: str) -> str:
        lines = [
            header,
            "",
            "| section | case | metric | value | unit | note |",
            "|---|---|---|---:|---|---|",
        ]
        for r in self.rows:
            lines.append("| " + " | ".join(str(r[f]) for f in FIELDS) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, mode: str, header: str) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = out_dir / f"benchmark-{mode}.csv", out_dir / f"benchmark-{mode}.md"
        with open(csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        md_path.write_text(self.markdown(header))
        return csv_path, md_path


# -- shared set-up ---------------------------------------------------------------------------
def make_prepared(work: Path, s: Settings) -> Path:
    """Generated microbead images at the benchmark size, prepared as the workflow does."""
    from hpstudy.microbeads import generate
    from hpstudy.prepare import prepare

    raw = generate(work / "raw", n_images=s.n_images, size=s.image_size, seed=0, progress=False)
    spec = {
        "name": "microbeads",
        "image_size": s.image_size,
        "split": {"method": "random", "train": 0.7, "val": 0.15, "test": 0.15, "seed": 42},
    }
    out = work / "prepared.pt"
    prepare(spec, raw, out, work / "manifest.json")
    return out


def base_config(s: Settings, **overrides):
    from hpstudy.config import TrainConfig

    values = {
        "model": "resnet_shallow",
        "batch_size": s.batch_size,
        "augment": s.augment,
        "patience": None,
        "seed": 0,
        **overrides,
    }
    return TrainConfig.from_dict(values)


def path_cases(s: Settings) -> list[tuple[str, dict]]:
    cases = [("device", {"data_path": "device"})]
    cases += [
        (f"dataloader_w{w}", {"data_path": "dataloader", "num_workers": w}) for w in s.workers
    ]
    return cases


def quiet(msg: str) -> None:
    pass


def train_steps(s: Settings, prepared: Path) -> int:
    """Optimizer steps per timed epoch: `train_batches` whole batches, fewer when the
    training split is smaller."""
    manifest = json.loads((prepared.parent / "manifest.json").read_text())
    n_train = manifest["split_sizes"]["train"]
    steps = min(s.train_batches, n_train // s.batch_size)
    if steps < 1:
        raise SystemExit(
            f"benchmark: {n_train} training images make no batch of "
            f"{s.batch_size}; raise --n-images or lower --batch-size"
        )
    return steps


# -- 1. data path ----------------------------------------------------------------------------
def bench_data(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """Images/s of each data path without the model: load + normalise (+ augment) each batch
    through the Trainer's own code; the paths take turns, epoch by epoch, so that load from
    other processes on a shared host hits them alike."""
    import torch

    from hpstudy.seeding import augment_generator
    from hpstudy.train import Trainer

    trainers = {}
    for case, over in path_cases(s):
        cfg = base_config(s, epochs=1, **over)
        trainers[case] = Trainer(
            cfg, prepared, work / f"data-{case}", work / f"data-{case}.pt", quiet
        )

    def one_epoch(trainer, epoch):
        gen, n = augment_generator(trainer.cfg.seed, epoch, trainer.device), 0
        for x_u8, y in trainer.train_loader.epoch(epoch):
            x, _ = trainer.augment(trainer.task.inputs(x_u8), trainer.task.targets(y), gen)
            n += len(x)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return n

    first, seconds, images = {}, dict.fromkeys(trainers, 0.0), dict.fromkeys(trainers, 0)
    for case, trainer in trainers.items():  # warm-up: starts the DataLoader workers
        t0 = time.perf_counter()
        one_epoch(trainer, 0)
        first[case] = time.perf_counter() - t0
    epoch, t_start = 1, time.perf_counter()
    while time.perf_counter() - t_start < s.data_seconds * len(trainers) or epoch < 4:
        for case, trainer in trainers.items():
            t0 = time.perf_counter()
            images[case] += one_epoch(trainer, epoch)
            seconds[case] += time.perf_counter() - t0
        epoch += 1
    for case, trainer in trainers.items():
        table.add(
            "data",
            case,
            "data_only_images_per_s",
            images[case] / seconds[case],
            "img/s",
            f"{epoch - 1} epochs of {trainer.n_train} (load+normalise"
            f"{'+' + '+'.join(s.augment) if s.augment else ''}); "
            f"first epoch {first[case]:.2f} s",
        )
    del trainers, trainer

    device_rate = _row_value(table, "data", "device", "data_only_images_per_s")
    for case, _ in path_cases(s)[1:]:
        other = _row_value(table, "data", case, "data_only_images_per_s")
        table.add(
            "data",
            f"device_vs_{case}",
            "data_only_speedup",
            device_rate / other,
            "x",
            "target >= 10 vs dataloader_w2 on CPU" if case == "dataloader_w2" else "",
        )


def bench_train(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """Images/s of each data path in full training steps of the real Trainer loop."""
    from hpstudy.train import Trainer

    n_train = train_steps(s, prepared) * s.batch_size
    for case, over in path_cases(s):
        cfg = base_config(s, epochs=s.train_epochs, train_subset=n_train, **over)
        out = work / f"train-{case}"
        trainer = Trainer(cfg, prepared, out, out / "ck.pt", quiet)
        trainer.fit()
        steady = [r["samples_per_s"] for r in trainer.state.history[1:]]
        table.add(
            "train",
            case,
            "train_images_per_s",
            max(steady),
            "img/s",
            f"best of {len(steady)} epochs x {n_train} images after a warm-up epoch",
        )
        del trainer


def _row_value(table: Table, section: str, case: str, metric: str) -> float:
    for r in table.rows:
        if (r["section"], r["case"], r["metric"]) == (section, case, metric):
            return float(r["value"])
    return math.nan


# -- 2. training-loop efficiency -------------------------------------------------------------
def ideal_stepper(trainer):
    """A function timing `steps` forward + backward + optimizer steps of the same model and
    optimizer on one batch already in memory: what a step costs without a loop around it."""
    import torch

    from hpstudy.models import build_model
    from hpstudy.optim import make_optimizer

    cfg, dev = trainer.cfg, trainer.device
    image_shape = trainer.manifest["image_shape"]
    model = build_model(cfg.model, image_shape[0], 1, image_shape[1]).to(dev)
    model = model.to(memory_format=trainer.memory_format)
    optimizer = make_optimizer(cfg, model)
    images = trainer.train_loader.images[: cfg.batch_size]
    x = trainer.task.inputs(images.to(dev))
    y = trainer.task.targets(trainer.train_loader.targets[: cfg.batch_size].to(dev))

    def step():
        with torch.autocast(dev.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
            out = model(x)
        torch.nn.functional.mse_loss(out.float(), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def seconds_per_step(steps: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return (time.perf_counter() - t0) / steps

    step()  # warm-up
    return seconds_per_step


def bench_loop(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """Efficiency = ideal step time / the real Trainer loop's time per optimizer step.
    Ideal blocks (one epoch's worth of steps) interleave with the loop's epochs: one before
    the first epoch and one after each (run from the Trainer's end-of-epoch log call, after
    the epoch's timing has stopped), so each epoch is compared with the ideal measured just
    before and just after it: load from other processes on a shared host hits both alike."""
    from hpstudy.train import Trainer

    steps = train_steps(s, prepared)
    n_train = steps * s.batch_size  # whole batches only: no short last batch
    cfg = base_config(s, epochs=s.train_epochs, train_subset=n_train, data_path="device")
    out = work / "loop"
    ideal: list[float] = []

    class AfterEpoch:  # called after the epoch's timing has stopped
        @staticmethod
        def on_epoch_end(trainer, row) -> None:
            ideal.append(measure(steps))

    trainer = Trainer(cfg, prepared, out, out / "ck.pt", quiet, callbacks=(AfterEpoch,))
    measure = ideal_stepper(trainer)
    ideal.append(measure(steps))
    trainer.fit()
    loop = [r["epoch_time_s"] / steps for r in trainer.state.history]
    ratios = [(ideal[e] + ideal[e + 1]) / 2 / loop[e] for e in range(1, len(loop))]
    table.add(
        "loop",
        "ideal_step",
        "seconds_per_step",
        statistics.median(ideal),
        "s",
        f"fwd+bwd+{cfg.optimizer} on one in-memory batch of {s.batch_size}; median of "
        f"{len(ideal)} blocks of {steps} steps, one before and one after each epoch",
    )
    table.add(
        "loop",
        "trainer_loop",
        "seconds_per_step",
        statistics.median(loop[1:]),
        "s",
        f"median of {len(loop) - 1} epochs x {steps} steps after a warm-up epoch "
        f"(device path, augment {'+'.join(s.augment) or 'none'}, diagnostics on)",
    )
    table.add(
        "loop",
        "trainer_loop",
        "efficiency",
        statistics.median(ratios),
        "ratio",
        "median over epochs of ideal (mean of the blocks around the epoch) / loop; "
        f"per epoch {', '.join(f'{r:.3f}' for r in ratios)}; 1.0 = no loop overhead; "
        "target >= 0.9 on CPU",
    )


# -- 3. per-job overhead ---------------------------------------------------------------------
PROBE = """
import json, sys, time
t = [time.perf_counter()]
import torch
t.append(time.perf_counter())
import hpstudy.train
t.append(time.perf_counter())
tv = "torchvision" in sys.modules
from hpstudy.prepare import load_prepared
data = load_prepared(sys.argv[1])
t.append(time.perf_counter())
from hpstudy.models import build_model, flops_per_sample
shape = data["manifest"]["image_shape"]
model = build_model("resnet_shallow", shape[0], 1, shape[1])
t.append(time.perf_counter())
tv_build = "torchvision" in sys.modules and not tv
x = data["images"][:2].float()
flops_per_sample(model, x)
t.append(time.perf_counter())
names = ["import_torch", "import_hpstudy_train", "load_prepared", "build_model", "count_flops"]
out = {n: b - a for n, a, b in zip(names, t, t[1:])}
out["hpstudy_train_imports_torchvision"] = tv
out["build_imports_torchvision"] = tv_build
print(json.dumps(out))
"""


def _timed(cmd: list[str], env: dict, repeats: int = 2) -> float:
    """Best wall time of `repeats` runs: load spikes on a shared host only ever add time."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=REPO, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


# Runs the real train script with a callback that notes the wall clock of the first training
# step (the Trainer's on_train_start comes just before it) in a file: no log parsing.
FIRST_STEP_CHILD = """
import json, runpy, sys, time
import hpstudy.train
NOTE = sys.argv[1]
class FirstStep:
    @staticmethod
    def on_train_start(trainer):
        with open(NOTE, "w") as fh:
            json.dump({"first_step": time.time()}, fh)
hpstudy.train.CALLBACKS.append(FirstStep)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _train_subprocess(
    cfg_file: Path,
    prepared: Path,
    out: Path,
    env: dict,
) -> tuple[float, float, float]:
    """(seconds from process start to the first training step, total seconds, CPU seconds)
    of the real train script, the first step seen through a Trainer callback."""
    out.mkdir(parents=True, exist_ok=True)
    note = out / "first-step.json"
    note.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-c",
        FIRST_STEP_CHILD,
        str(note),
        str(REPO / "workflow" / "scripts" / "train.py"),
        str(cfg_file),
        str(prepared),
        str(out),
        str(out / "keep"),
    ]
    cpu0 = children_cpu_seconds()
    start, t0 = time.time(), time.perf_counter()
    proc = subprocess.run(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO
    )
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{proc.stderr[-3000:]}")
    first_step = json.loads(note.read_text())["first_step"] - start
    return first_step, total, children_cpu_seconds() - cpu0


def bench_overhead(
    table: Table, s: Settings, prepared: Path, work: Path, envs: dict[str, dict]
) -> None:
    import yaml

    cfg = base_config(s, epochs=1, train_subset=s.batch_size)
    cfg_file = work / "overhead-config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
    py = sys.executable
    for label, env in envs.items():
        interp = _timed([py, "-c", "pass"], env)
        torch_s = _timed([py, "-c", "import torch"], env)
        tv_s = _timed([py, "-c", "import torch, torchvision"], env)
        # what the preamble of a `script:` job imports before the script itself runs
        sm_s = _timed(
            [py, "-c", "import snakemake.logging, snakemake.iocontainers, snakemake.shell"], env
        )
        probe = subprocess.run(
            [py, "-c", PROBE, str(prepared)],
            check=True,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        parts = json.loads(probe.stdout.strip().splitlines()[-1])
        first, total, cpu = _train_subprocess(cfg_file, prepared, work / f"overhead-{label}", env)
        table.add(
            "overhead",
            label,
            "start_to_first_step",
            first,
            "s",
            "real workflow/scripts/train.py subprocess",
        )
        table.add(
            "overhead",
            label,
            "train_script_total",
            total,
            "s",
            f"1 epoch of {s.batch_size} images + eval + outputs",
        )
        table.add("overhead", label, "train_script_cpu", cpu, "s", "user+sys CPU time")
        table.add("overhead", label, "python_start", interp, "s")
        table.add("overhead", label, "import_torch", torch_s - interp, "s")
        table.add(
            "overhead",
            label,
            "import_torchvision",
            tv_s - torch_s,
            "s",
            "after torch; hpstudy.train imports it: "
            f"{'yes' if parts['hpstudy_train_imports_torchvision'] else 'no'}",
        )
        table.add(
            "overhead",
            label,
            "import_snakemake_preamble",
            sm_s - interp,
            "s",
            "paid by every job run through `script:` in the workflow",
        )
        notes = {
            "load_prepared": "memory-mapped, checksum verified",
            "build_model": "resnet_shallow; includes importing torchvision (its BasicBlock)"
            if parts["build_imports_torchvision"]
            else "resnet_shallow",
        }
        for name in ("import_hpstudy_train", "load_prepared", "build_model", "count_flops"):
            table.add("overhead", label, name, parts[name], "s", notes.get(name, ""))


def subprocess_envs(work: Path, s: Settings) -> dict[str, dict]:
    """The environment as given, and (when it disables bytecode caching, as some sandboxes
    do) one with a warm bytecode cache in a private folder, as an ordinary install has."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    envs = {"as_configured": env}
    if s.bytecode_cache and env.get("PYTHONDONTWRITEBYTECODE"):
        warm = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        warm["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch, torchvision, snakemake.api, hpstudy.train, pandas, scipy.stats",
            ],
            env=warm,
            cwd=REPO,
            check=True,
        )
        envs["bytecode_cache"] = warm
    return envs


# -- 4. workflow scale -----------------------------------------------------------------------
def write_scale_study(folder: Path, n: int) -> Path:
    """A study of `n` experiments in groups of 100 (batch size x epochs), 1 seed."""
    import yaml

    (folder / "studies").mkdir(parents=True, exist_ok=True)
    groups = {}
    for g in range((n + 99) // 100):
        k = min(100, n - g * 100)
        groups[f"g{g}"] = {
            "list": [{"batch_size": 16 * (1 + i % 5), "epochs": 10 + i} for i in range(k)]
        }
    name = f"scale{n}"
    study = {
        "name": name,
        "seeds": 1,
        "base": {"model": "resnet_shallow"},
        "groups": groups,
        "dataset": {
            "name": "microbeads",
            "data_percentage": 50,
            "image_size": 128,
            "split": {"method": "random", "train": 0.7, "val": 0.15, "test": 0.15, "seed": 42},
        },
    }
    (folder / "studies" / f"{name}.yaml").write_text(yaml.safe_dump(study))
    config = {
        "study": name,
        "studies_dir": str(folder / "studies"),
        "results_dir": str(folder / "results"),
        "reports_dir": str(folder / "reports"),
        "synthetic": {"n_images": 60, "image_size": 64, "seed": 0},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run_seconds(folder: Path, env: dict, *extra: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, jobs) of `snakemake -n`: on a host shared with other
    work the CPU time is the steadier number."""
    exe = Path(sys.executable).parent / "snakemake"
    cmd = [
        str(exe) if exe.exists() else "snakemake",
        "-n",
        "--directory",
        str(folder),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(folder / "config.yaml"),
        *extra,
    ]
    t0, cpu0 = time.perf_counter(), children_cpu_seconds()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, children_cpu_seconds() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    jobs = -1
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            jobs = int(parts[1])
    return seconds, cpu, jobs


def bench_dag(table: Table, s: Settings, work: Path, env: dict, env_label: str) -> None:
    if s.mode == "full":  # warms the file system and bytecode caches
        dry_run_seconds(write_scale_study(work / "dag-warmup", 2), env)
    for n in s.dag_sizes:
        folder = write_scale_study(work / f"dag-{n}", n)
        # -n lists every job; -n --quiet rules prints only the job counts (the way to
        # check a large study)
        for metric, extra in (
            ("snakemake_dry_run", ()),
            ("snakemake_dry_run_quiet", ("--quiet", "rules")),
        ):
            seconds, cpu, jobs = dry_run_seconds(folder, env, *extra)
            table.add(
                "dag",
                f"{n}_experiments",
                metric,
                seconds,
                "s",
                f"{jobs} jobs; wall time; {env_label}" + ("; target < 60 s" if n == 10_000 else ""),
            )
            table.add(
                "dag",
                f"{n}_experiments",
                f"{metric}_cpu",
                cpu,
                "s",
                "user+sys CPU time of the snakemake process",
            )


# -- 5. GPU ----------------------------------------------------------------------------------
def bench_gpu(table: Table, s: Settings, prepared: Path, work: Path, overhead_s: float) -> None:
    import torch

    from hpstudy.device import pick_device
    from hpstudy.train import Trainer

    if pick_device().type != "cuda":
        table.add("gpu", "all", "status", "skipped: no CUDA device")
        return
    name = torch.cuda.get_device_name(0)
    cfg = base_config(s, epochs=s.gpu_epochs, augment=(), mixed_precision=True)
    trainer = Trainer(cfg, prepared, work / "gpu-exp", work / "gpu-exp" / "ck.pt", quiet)
    metrics = trainer.fit()
    table.add(
        "gpu",
        "bottleneck_experiment",
        "train_time",
        metrics["train_time_s"],
        "s",
        f"{name}; batch {s.batch_size} x {s.gpu_epochs} epochs x {trainer.n_train} "
        "train images; bf16; target < 5 s on H100",
    )
    table.add(
        "gpu",
        "bottleneck_experiment",
        "wall_time",
        metrics["wall_time_s"],
        "s",
        "train + per-epoch eval + checkpoints",
    )
    runs = s.gpu_study_experiments * s.gpu_seeds
    estimate = runs * (metrics["wall_time_s"] + overhead_s)
    table.add(
        "gpu",
        "bottleneck_study",
        "estimate_one_at_a_time",
        estimate,
        "s",
        f"{runs} runs x (wall + {overhead_s:.1f} s start-up); target < 600 s on H100",
    )
    _gpu_sharing(table, s, prepared, work)
    _resnet18_epoch(table, s)


def _gpu_sharing(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """k real train jobs at once on the one GPU (what HPSTUDY_JOBS_PER_GPU=k does in the
    local profile) against one at a time: runs per minute, start-up included."""
    import yaml

    cfg = base_config(s, epochs=max(s.gpu_epochs // 5, 1), augment=(), mixed_precision=True)
    cfg_file = work / "share-config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {
        **os.environ,
        "HPSTUDY_DEVICE": "cuda",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0],
    }
    script = REPO / "workflow" / "scripts" / "train.py"
    base_rate = math.nan
    for k in (1, 2, 4):
        t0 = time.perf_counter()
        procs = []
        for i in range(k):
            out = work / f"share-{k}-{i}"
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(script),
                        str(cfg_file),
                        str(prepared),
                        str(out),
                        str(out / "keep"),
                    ],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"train job failed while sharing the GPU:\n{err[-2000:]}")
        rate = k / (time.perf_counter() - t0) * 60
        base_rate = rate if k == 1 else base_rate
        table.add(
            "gpu",
            f"jobs_per_gpu_{k}",
            "runs_per_minute",
            rate,
            "runs/min",
            f"{cfg.epochs}-epoch bottleneck runs incl. start-up; "
            f"{rate / base_rate:.2f}x one at a time",
        )


def _resnet18_epoch(table: Table, s: Settings) -> None:
    """ResNet-18 at CIFAR-10's shape (random data on the device: nothing is downloaded)."""
    import torch

    from hpstudy.models import MODEL_FACTORIES, build_model

    if "resnet18" not in MODEL_FACTORIES:
        table.add("gpu", "resnet18_cifar10", "status", "skipped: no resnet18 model")
        return
    dev, batch, n = torch.device("cuda"), 512, 50_000 if s.mode == "full" else 5_000
    torch.backends.cudnn.benchmark = True
    model = build_model("resnet18", 3, 10, 32).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x_all = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=dev)
    y_all = torch.randint(0, 10, (n,), device=dev)

    def epoch():
        for i in range(0, n, batch):
            x = (x_all[i : i + batch].float() / 255).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y_all[i : i + batch])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(dev)

    epoch()  # warm-up (cudnn autotuning)
    t0 = time.perf_counter()
    epoch()
    table.add(
        "gpu",
        "resnet18_cifar10",
        "epoch_time",
        time.perf_counter() - t0,
        "s",
        f"{n} random 3x32x32 images, batch {batch}, bf16, channels_last",
    )


# -- driver ----------------------------------------------------------------------------------
def bench_main(table: Table, work: Path, study: str = "quick") -> None:
    """The README's main job from an empty results folder: wall time vs the estimate."""
    import yaml

    from hpstudy import cost
    from hpstudy.study import load_study

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        study=study,
        studies_dir=str(REPO / "config" / "studies"),
        results_dir=str(work / "main" / "results"),
        reports_dir=str(work / "main" / "reports"),
    )
    (work / "main").mkdir(parents=True, exist_ok=True)
    (work / "main" / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = load_study(REPO / "config" / "studies" / f"{study}.yaml")
    cal = cost.Calibration(threads=1)
    runs = cost.estimate_study(loaded, cal, config["synthetic"]["n_images"])
    parallel = os.cpu_count() or 1
    estimate = sum(r.wall_s for r in runs) * len(loaded.seeds) / parallel
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work / "main"),
            "--configfile",
            str(work / "main" / "config.yaml"),
            "--cores",
            "all",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    note = f"snakemake --cores all ({parallel} CPUs), study {study}, empty results folder"
    if proc.returncode:
        note += f"; FAILED (exit {proc.returncode})"
    table.add("main", study, "wall_time", elapsed, "s", note)
    table.add(
        "main",
        study,
        "estimate_training",
        estimate,
        "s",
        f"hpstudy.cost: {len(runs) * len(loaded.seeds)} runs, {parallel} at once "
        f"(training only; {cal.machine})",
    )


def machine_header(s: Settings, command: str) -> str:
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return (
        f"# hpstudy benchmark ({s.mode})\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {platform.node()}; "
        f"{os.cpu_count()} CPUs (load {load:.1f}); torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); CUDA: {cuda}; images {s.image_size} px, "
        f"{s.n_images} prepared, batch {s.batch_size}, augment "
        f"{'+'.join(s.augment) or 'none'}.\n"
        f"Command: `{command}`"
    )


# -- 6. the workflow end to end -------------------------------------------------------------
def workflow_numbers(folder: Path, study: str) -> dict[str, float]:
    """Train jobs, their summed wall time (Snakemake benchmark files) and the runs' training
    time (metrics.json: the Trainer's wall time and its epochs' time) of a finished study.
    Works for both layouts: a job per run (runs/{exp}/seed{N}) or per configuration."""
    results = folder / "results"
    jobs = sorted((results / "benchmarks" / "train" / study).rglob("*.tsv"))
    job_wall = sum(float(f.read_text().splitlines()[-1].split("\t")[0]) for f in jobs)
    runs = [json.loads(m.read_text()) for m in (results / study / "runs").rglob("metrics.json")]
    return {
        "train_jobs": len(jobs),
        "runs": len(runs),
        "job_wall_s": job_wall,
        "fit_wall_s": sum(r["wall_time_s"] for r in runs),
        "epochs_s": sum(r["train_time_s"] for r in runs),
    }


def bench_workflow(table: Table, work: Path, base: str, cores: int, study: str = "quick") -> None:
    """The quick study end to end, this tree and `base` side by side (same machine, one after
    the other, each in a fresh folder with its own generated data)."""
    import yaml

    trees = {"this_tree": REPO}
    base_tree = work / "base-tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), base],
        check=True,
        capture_output=True,
    )
    trees[f"base_{base[:10]}"] = base_tree
    try:
        for label, tree in trees.items():
            folder = work / f"workflow-{label}"
            (folder / "studies").mkdir(parents=True)
            (folder / "studies" / f"{study}.yaml").write_text(
                (tree / "config" / "studies" / f"{study}.yaml").read_text()
            )
            (folder / "config.yaml").write_text(
                yaml.safe_dump(
                    {
                        "study": study,
                        "studies_dir": str(folder / "studies"),
                        "results_dir": str(folder / "results"),
                        "reports_dir": str(folder / "reports"),
                    }
                )
            )
            exe = Path(sys.executable).with_name("snakemake")
            cmd = [
                str(exe) if exe.exists() else "snakemake",
                "--snakefile",
                str(tree / "Snakefile"),
                "--directory",
                str(folder),
                "--configfile",
                str(folder / "config.yaml"),
                "--cores",
                str(cores),
            ]
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}  # each tree its own package
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{label}: snakemake failed:\n{proc.stderr[-3000:]}")
            n = workflow_numbers(folder, study)
            note = f"{study} study, --cores {cores}; load average {load0:.1f} at the start"
            table.add("workflow", label, "end_to_end", wall, "s", note)
            table.add("workflow", label, "train_jobs", n["train_jobs"], "jobs", f"{n['runs']} runs")
            table.add(
                "workflow",
                label,
                "train_jobs_wall",
                n["job_wall_s"],
                "s",
                "sum over the train jobs (Snakemake benchmark files)",
            )
            table.add(
                "workflow",
                label,
                "runs_fit_wall",
                n["fit_wall_s"],
                "s",
                "sum over the runs of the Trainer's wall time (metrics.json wall_time_s)",
            )
            table.add(
                "workflow",
                label,
                "overhead_per_run",
                (n["job_wall_s"] - n["fit_wall_s"]) / max(n["runs"], 1),
                "s",
                "(train jobs' wall - runs' fit wall) / runs; target <= 2 s",
            )
            table.add(
                "workflow",
                label,
                "overhead_per_run_vs_epochs",
                (n["job_wall_s"] - n["epochs_s"]) / max(n["runs"], 1),
                "s",
                "(train jobs' wall - runs' epoch-loop time) / runs: also counts "
                "evaluation, checkpoints and model set-up",
            )
        rows = {
            r["case"]: float(r["value"])
            for r in table.rows
            if r["section"] == "workflow" and r["metric"] == "end_to_end"
        }
        this, other = rows["this_tree"], rows[f"base_{base[:10]}"]
        table.add(
            "workflow", "this_vs_base", "end_to_end_ratio", this / other, "x", "target <= 0.6"
        )
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
            capture_output=True,
        )


def first_step(table: Table) -> float:
    """The fastest start-to-first-step of the overhead section (0 when it did not run)."""
    first = [float(r["value"]) for r in table.rows if r["metric"] == "start_to_first_step"]
    return min(first) if first else 0.0


def run(
    s: Settings,
    out_dir: Path,
    sections: tuple[str, ...] = DEFAULT_SECTIONS,
    work_dir: Path | None = None,
    command: str = "",
    base: str = "HEAD~1",
    cores: int = 2,
) -> Table:
    table = Table()
    with tempfile.TemporaryDirectory(prefix="hpstudy-bench-", dir=work_dir) as tmp:
        work = Path(tmp)
        needs_data = set(sections) & {"data", "train", "loop", "overhead", "gpu"}
        prepared = make_prepared(work, s) if needs_data else None
        envs = subprocess_envs(work, s) if set(sections) & {"overhead", "dag"} else {}
        steps = {
            "data": lambda: bench_data(table, s, prepared, work),
            "train": lambda: bench_train(table, s, prepared, work),
            "loop": lambda: bench_loop(table, s, prepared, work),
            "overhead": lambda: bench_overhead(table, s, prepared, work, envs),
            "dag": lambda: bench_dag(table, s, work, envs[dag_label], dag_label),
            "gpu": lambda: bench_gpu(table, s, prepared, work, first_step(table)),
            "workflow": lambda: bench_workflow(table, work, base, cores),
            "main": lambda: bench_main(table, work),
        }
        dag_label = "bytecode_cache" if "bytecode_cache" in envs else "as_configured"
        for name, step in steps.items():
            if name in sections:
                # progress only (stderr): the numbers are printed once, in the table below
                print(f"benchmark: {name} ...", file=sys.stderr, flush=True)
                before, start = len(table.rows), time.perf_counter()
                step()
                print(
                    f"benchmark: {name}: {len(table.rows) - before} measurements in "
                    f"{time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    header = machine_header(s, command or f"python benchmarks/benchmark.py --{s.mode}")
    csv_path, md_path = table.write(out_dir, s.mode, header)
    print(table.markdown(header))
    print(f"wrote {csv_path} and {md_path}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/benchmark.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="reduced sizes (CI; the default)",
    )
    mode.add_argument(
        "--full",
        action="store_const",
        dest="mode",
        const="full",
        help="the bottleneck study's settings",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "reports" / "benchmarks",
        help="folder for benchmark-<mode>.csv/.md (default reports/benchmarks)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all "
        "but workflow and main, which run whole studies)",
    )
    parser.add_argument(
        "--base", default="HEAD~1", help="workflow section: the git revision to compare with"
    )
    parser.add_argument(
        "--cores", type=int, default=2, help="workflow section: snakemake --cores (default 2)"
    )
    parser.add_argument("--image-size", type=int, help="override the image size (px)")
    parser.add_argument("--n-images", type=int, help="override the number of images")
    parser.add_argument("--batch-size", type=int, help="override the batch size")
    parser.add_argument("--workers", help="DataLoader worker counts, e.g. 0,2,4")
    parser.add_argument("--dag-sizes", help="experiment counts for snakemake -n, e.g. 100,1000")
    parser.add_argument(
        "--augment",
        help="augmentations in the data and loop sections, "
        "e.g. dihedral or hflip,crop (default: none, as the bottleneck study)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads, here and in the subprocesses (default: "
        "torch's; use 1 on a host oversubscribed by other work)",
    )
    parser.add_argument("--work-dir", type=Path, help="parent of the temporary work folder")
    args = parser.parse_args(argv)
    s = FULL if args.mode == "full" else QUICK
    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    changes: dict = {}
    if args.image_size:
        changes["image_size"] = args.image_size
    if args.n_images:
        changes["n_images"] = args.n_images
    if args.augment:
        changes["augment"] = tuple(a.strip() for a in args.augment.split(",") if a.strip())
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.workers:
        changes["workers"] = tuple(int(w) for w in args.workers.split(","))
    if args.dag_sizes:
        changes["dag_sizes"] = tuple(int(n) for n in args.dag_sizes.split(","))
    s = replace(s, **changes)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the subprocesses
    argv = sys.argv[1:] if argv is None else argv
    run(
        s,
        args.out,
        sections,
        args.work_dir,
        " ".join(["python benchmarks/benchmark.py", *argv]),
        args.base,
        args.cores,
    )


if __name__ == "__main__":
    main()
