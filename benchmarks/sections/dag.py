"""Section `dag`: `snakemake -n` wall and CPU time for generated studies of N experiments."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sections.common import REPO, Settings, Table, children_cpu_seconds


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
