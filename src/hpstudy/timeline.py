"""Every attempt of every run of a study (timeline.csv) and the compute it spent (compute.csv),
from the attempt records training keeps (hpstudy.attempts): the aggregate step writes both,
the report's "Whole study" section draws and tables them. Failed and killed attempts count
too: compute spent on them is compute spent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from hpstudy.study import Study

TIMELINE_COLUMNS = [
    "config_hash",
    "experiments",
    "groups",
    "seed",
    "attempt",
    "outcome",
    "ended",
    "host",
    "device",
    "gpu",
    "threads",
    "fused_seeds",
    "job_id",
    "submitted",
    "start",
    "end",
    "wall_s",
    "queue_wait_s",
]


def outcome(ended: Any) -> str:
    """finished, interrupted (SIGTERM/SIGINT, checkpoint saved), killed (no word), failed,
    or running (no end yet), from an attempt's `ended` (hpstudy.attempts)."""
    from hpstudy.attempts import FINISHED, KILLED

    if not isinstance(ended, str) or not ended:
        return "running"
    if ended == FINISHED:
        return "finished"
    if ended == KILLED:
        return "killed"
    return "interrupted" if ended.startswith("interrupted") else "failed"


def _attempt_records(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value if isinstance(value, list) else []


def timeline_table(
    study: Study, summary: pd.DataFrame, study_dir: str | Path, missing: list[str] = ()
) -> pd.DataFrame:
    """One row per attempt of every run of the study (each configuration x seed once, also
    when several experiments share it), from the attempt records training keeps: those a
    finished run carries in its extract record (`attempt_records`), and for runs with no
    results (`missing`, `{exp}/seed{N}`) the record beside their checkpoint
    (`checkpoints/{config id}/seed{N}.attempts.json`), so failed and killed attempts count
    too. `queue_wait_s` is the wait of a batch job before its first attempt (start minus
    the submission time the job was given, profiles/pbs); empty where not known (local runs,
    Slurm)."""
    from hpstudy import attempts as attempts_mod

    sharing = study.configs()
    entries: list[tuple[str, int, dict[str, Any]]] = []
    seen: set[tuple[str, int]] = set()
    if not summary.empty and "attempt_records" in summary:
        for row in summary.drop_duplicates(["config_hash", "seed"]).itertuples():
            key = (str(row.config_hash), int(row.seed))
            seen.add(key)
            for entry in _attempt_records(row.attempt_records):
                if entry.get("device") is None:  # older records: the run's device
                    entry["device"] = str(getattr(row, "device", "") or "").split(":")[0] or None
                entries.append((*key, entry))
    config_of = {e.id: e.config_id for e in study.experiments}
    for run in missing:
        exp, seed = run.split("/")
        key = (config_of.get(exp, exp), int(seed.removeprefix("seed")))
        if key in seen:
            continue
        seen.add(key)
        checkpoint = Path(study_dir) / "checkpoints" / key[0] / f"{seed}.pt"
        entries += [(*key, entry) for entry in attempts_mod.load(checkpoint)]
    rows = []
    for cfg, seed, entry in entries:
        exps = sharing.get(cfg, [])
        rows.append(
            {
                "config_hash": cfg,
                "experiments": ",".join(e.id for e in exps),
                "groups": ",".join(dict.fromkeys(e.group for e in exps)),
                "seed": seed,
                **{c: entry.get(c) for c in TIMELINE_COLUMNS[4:] if c in entry},
                "outcome": outcome(entry.get("ended")),
            }
        )
    table = pd.DataFrame(rows, columns=TIMELINE_COLUMNS)
    if table.empty:
        return table
    for column in ("submitted", "start", "end", "wall_s", "threads", "fused_seeds"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table = table.sort_values(["start", "config_hash", "seed"], kind="stable")
    jobs = table.dropna(subset=["job_id", "submitted"])
    first = jobs.groupby("job_id")["start"].idxmin()  # a job's queue wait precedes its first
    table.loc[first, "queue_wait_s"] = (
        table.loc[first, "start"] - table.loc[first, "submitted"]
    ).clip(lower=0)
    return table.reset_index(drop=True)


def compute_table(study: Study, timeline: pd.DataFrame) -> pd.DataFrame:
    """Compute spent, for the study and per group: wall hours, CPU-hours (wall time x the
    attempt's CPU threads) and GPU-hours (wall time x 1 on a GPU; training uses one), over
    every attempt, failed and killed ones too. An attempt that trained k seeds as one model
    (`fused_seeds`, hpstudy.fused) is on each of their records; each counts 1/k of it. The
    study counts each run once; a run shared by several groups counts in each of them, so
    the group rows may add up to more than the study. Attempts killed without a word have no
    end: their time is unknown and counted in `attempts_unknown`, not guessed."""
    frame = timeline.copy()
    if frame.empty:
        frame = pd.DataFrame(columns=TIMELINE_COLUMNS)
    share = 1
    if "fused_seeds" in frame:  # older timelines lack it
        share = pd.to_numeric(frame["fused_seeds"], errors="coerce").fillna(1).clip(lower=1)
    wall = pd.to_numeric(frame["wall_s"], errors="coerce") / share
    threads = pd.to_numeric(frame["threads"], errors="coerce")
    on_gpu = frame["device"].astype(str).str.startswith("cuda")
    frame["wall_h"] = wall / 3600
    frame["cpu_h"] = wall * threads / 3600
    frame["gpu_h"] = (wall / 3600).where(on_gpu, 0.0).where(wall.notna())
    frame["unknown"] = wall.isna() | threads.isna()

    def row(scope: str, part: pd.DataFrame) -> dict[str, Any]:
        return {
            "scope": scope,
            "configs": part["config_hash"].nunique(),
            "runs": len(part[["config_hash", "seed"]].drop_duplicates()),
            "attempts": len(part),
            "attempts_not_finished": int((part["outcome"] != "finished").sum()),
            "attempts_unknown": int(part["unknown"].sum()),
            "wall_h": float(part["wall_h"].sum()),
            "cpu_h": float(part["cpu_h"].sum()),
            "gpu_h": float(part["gpu_h"].sum()),
        }

    groups = frame["groups"].fillna("").astype(str).str.split(",")
    rows = [row("study", frame)]
    rows += [row(g, frame[groups.map(lambda gs, g=g: g in gs)]) for g in study.groups]
    return pd.DataFrame(rows)
