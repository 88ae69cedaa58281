"""Rule extract: the one place that reads a train job's raw files.

For one configuration (all its seeds) it reads each seed's config.yaml, metrics.json,
history.csv and layers.csv.gz and the job's Snakemake benchmark file, and writes
- one tidy record per seed (every resolved config field, every metric, and the derived
  per-run facts: optimizer steps, epochs run, best epoch, converged, resource use),
- the per-epoch history of every seed (curves), and the per-layer diagnostics (layers),
each keyed by `config_hash` (the configuration, without its seed) and `seed`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from hpstudy.integrity import DamagedFile, damaged, read_csv, read_json

# A published seed is repaired by the workflow itself: its start-up check finds the damage
# and reruns that configuration's train job (the seed is copied again from its kept copy,
# or trained again when that is damaged too).
REPAIR = "rerun snakemake: it republishes the seed, or trains it again"


def read_layers(path: Path) -> pd.DataFrame:
    # older runs wrote layers.csv.gz uncompressed: look at the gzip magic bytes
    with open(path, "rb") as fh:
        compressed = fh.read(2) == b"\x1f\x8b"
    # an empty table is e.g. a run that diverged in its first epoch
    return read_csv(path, REPAIR, compression="gzip" if compressed else None)


def read_history(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        return pd.DataFrame()
    return read_csv(path, REPAIR)


def read_benchmark(path: str | Path | None) -> dict[str, float]:
    """The train job's Snakemake benchmark: wall seconds, peak RSS and CPU seconds."""
    if not path or not Path(path).is_file():
        return {}
    bench = read_csv(path, sep="\t")
    if bench.empty:
        return {}
    last = bench.iloc[-1]
    out = {"job_wall_s": float(last["s"])}
    for column, key in (("max_rss", "job_max_rss_mb"), ("cpu_time", "job_cpu_s")):
        if column in bench:
            value = pd.to_numeric(last[column], errors="coerce")
            out[key] = float(value) if pd.notna(value) else math.nan
    return out


def derived_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-run facts the later stages use and never recompute."""
    epochs = metrics.get("epochs_run") or 0
    best = metrics.get("best_epoch")
    stopped = bool(metrics.get("stopped_early"))
    return {
        "optimizer_steps": metrics.get("optimizer_steps"),
        "epochs_run": epochs,
        "best_epoch": best,
        # converged: the best validation loss came before the last epoch, or early stopping
        # ended the run; a run still improving at its last epoch wanted more epochs
        "converged": metrics.get("status") == "ok"
        and (stopped or (best is not None and best < epochs)),
    }


def seed_record(
    run_dir: str | Path, config_id: str, seed: int, job: dict[str, float] | None = None
) -> dict[str, Any]:
    run_dir = Path(run_dir)
    problems = damaged(run_dir, full=True)
    if problems:
        raise DamagedFile(f"damaged: {'; '.join(problems)}; {REPAIR}")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except yaml.YAMLError as err:
        raise DamagedFile(f"{run_dir / 'config.yaml'}: not valid YAML ({err}); {REPAIR}") from None
    metrics = read_json(run_dir / "metrics.json", REPAIR)
    if config.get("seed") != seed:
        raise ValueError(f"{run_dir}: config.yaml has seed {config.get('seed')}, expected {seed}")
    record: dict[str, Any] = {"config_hash": config_id, "seed": seed, "run_dir": str(run_dir)}
    for key, value in config.items():
        record[key] = json.dumps(value) if isinstance(value, list | dict) else value
    for key, value in metrics.items():
        key = "run_hash" if key == "config_hash" else key  # the hash with the seed
        record[key] = json.dumps(value) if isinstance(value, list | dict) else value
    record.update(derived_facts(metrics))
    record.update(job or {})
    return record


def extract(
    runs_dir: str | Path, config_id: str, seeds: list[int], benchmark: str | Path | None = None
) -> tuple[list[dict[str, Any]], pd.DataFrame, pd.DataFrame]:
    """Records, curves and layers of every seed of one configuration."""
    runs_dir = Path(runs_dir)
    job = read_benchmark(benchmark)
    if job:
        job["job_seeds"] = len(seeds)
    records, curves, layers = [], [], []
    for seed in seeds:
        run_dir = runs_dir / f"seed{seed}"
        records.append(seed_record(run_dir, config_id, seed, job))
        for frame, out in (
            (read_history(run_dir / "history.csv"), curves),
            (read_layers(run_dir / "layers.csv.gz"), layers),
        ):
            if not frame.empty:
                frame.insert(0, "seed", seed)
                frame.insert(0, "config_hash", config_id)
                out.append(frame)
    return (
        records,
        pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        pd.concat(layers, ignore_index=True) if layers else pd.DataFrame(),
    )


def write_extract(
    runs_dir, config_id, seeds, benchmark, out_record, out_curves, out_layers
) -> list[dict[str, Any]]:
    from hpstudy.atomic import write_csv, write_json

    records, curves, layers = extract(runs_dir, config_id, seeds, benchmark)
    write_json(out_record, records)
    write_csv(out_curves, curves)
    write_csv(out_layers, layers)
    return records
