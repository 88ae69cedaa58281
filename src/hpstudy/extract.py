"""Turn one run's files into one tidy record: every resolved config field + every metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def run_record(run_dir: str | Path, study: str, experiment: str, group: str, label: str,
               seed: int) -> dict[str, Any]:
    run_dir = Path(run_dir)
    with open(run_dir / "config.yaml") as fh:
        config = yaml.safe_load(fh)
    with open(run_dir / "metrics.json") as fh:
        metrics = json.load(fh)
    if config.get("seed") != seed:
        raise ValueError(f"{run_dir}: config.yaml has seed {config.get('seed')}, expected {seed}")
    record: dict[str, Any] = {"study": study, "experiment": experiment, "group": group,
                              "label": label, "seed": seed, "run_dir": str(run_dir)}
    for key, value in config.items():
        record[key] = json.dumps(value) if isinstance(value, list | dict) else value
    for key, value in metrics.items():
        record[key] = json.dumps(value) if isinstance(value, list | dict) else value
    return record
