"""Section `overhead`: the fixed cost of a train job, a real `python workflow/scripts/train.py`
from process start to its first training step, and its parts (interpreter, import torch,
torchvision, hpstudy.train, load prepared, build model, FLOP counting)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from sections.common import REPO, Settings, Table, base_config, children_cpu_seconds

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
