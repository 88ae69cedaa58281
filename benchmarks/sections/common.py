"""What every benchmark section shares: the settings of a run (--quick, --full), the table
of measurements, the generated and prepared data, a training config, the machine header."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "src") not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO / "src"))
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


def row_value(table: Table, section: str, case: str, metric: str) -> float:
    for r in table.rows:
        if (r["section"], r["case"], r["metric"]) == (section, case, metric):
            return float(r["value"])
    return math.nan


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
