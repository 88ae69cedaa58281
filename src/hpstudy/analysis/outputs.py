"""What the analysis writes: stats.json (everything it found), verdicts.csv (one row per
question) and recommended.yaml, all JSON/YAML-safe."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """Plain Python for json/yaml: numpy scalars to floats/ints, nan/inf to None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def stats_document(result: dict[str, Any]) -> dict[str, Any]:
    """stats.json: everything analyse_study found, JSON-safe (verdicts as records; other
    tables, such as the runs hpstudy.analyze checked, stay out)."""
    doc = {k: v for k, v in result.items() if k != "verdicts" and not hasattr(v, "to_dict")}
    doc["verdicts"] = result["verdicts"].to_dict(orient="records")
    return json_safe(doc)


def write_outputs(
    result: dict[str, Any],
    out_stats: str | Path | None = None,
    out_verdicts: str | Path | None = None,
    out_recommended: str | Path | None = None,
) -> None:
    """stats.json, verdicts.csv (one row per question) and recommended.yaml."""
    import yaml

    from hpstudy.atomic import write_csv, write_json, write_text

    if out_stats is not None:
        write_json(out_stats, stats_document(result))
    if out_verdicts is not None:
        write_csv(out_verdicts, result["verdicts"])
    if out_recommended is not None:
        text = yaml.safe_dump(json_safe(result["recommended"]), sort_keys=False, allow_unicode=True)
        write_text(out_recommended, "# hpstudy: the recommended configuration\n" + text)
