"""Per level (experiment) of a group: its runs, failures, mean and interval, and the checks
that say whether the group's answer can be trusted: convergence, optimizer steps, clipped
intervals, failed runs (Fisher's exact test against the baseline, and a rank check where
failures rank worst), and how unequal the levels' noise is (Brown-Forsythe)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from hpstudy.stats import mean_ci as t_interval  # tables and figures share one interval

BOUNDS = {  # the range of a metric, where its intervals are clipped
    "test_r2": (-math.inf, 1.0),
    "test_accuracy": (0.0, 1.0),
    "test_top5": (0.0, 1.0),
}


def level_table(
    runs: pd.DataFrame,
    experiments: list[str],
    labels: dict[str, str],
    metric: str,
    baseline: str | None,
) -> list[dict[str, Any]]:
    rows = []
    base = runs[runs["experiment"] == baseline] if baseline else None
    bounds = BOUNDS.get(metric)
    for exp in experiments:
        frame = runs[runs["experiment"] == exp]
        ok = frame[frame["status"] == "ok"]
        values = pd.to_numeric(ok[metric], errors="coerce") if metric in ok else pd.Series()
        mean, sd, lo, hi = t_interval(values)
        clipped = False
        if bounds and math.isfinite(hi) and (hi > bounds[1] or lo < bounds[0]):
            lo, hi, clipped = max(lo, bounds[0]), min(hi, bounds[1]), True
        steps = (
            pd.to_numeric(ok["optimizer_steps"], errors="coerce").mean()
            if "optimizer_steps" in ok
            else math.nan
        )
        row = {
            "experiment": exp,
            "label": labels[exp],
            "n_runs": len(frame),
            "n_ok": len(ok),
            "n_failed": int(len(frame) - len(ok)),
            "statuses": {
                s: int(n)
                for s, n in frame.loc[frame["status"] != "ok", "status"].value_counts().items()
            },
            "mean": mean,
            "sd": sd,
            "ci_low": lo,
            "ci_high": hi,
            "ci_clipped": clipped,
            "optimizer_steps": float(steps) if pd.notna(steps) else math.nan,
            "n_not_converged": not_converged(ok),
            "fisher_p": math.nan,
        }
        if base is not None and exp != baseline and len(base):
            table = [
                [row["n_failed"], row["n_ok"]],
                [int((base["status"] != "ok").sum()), int((base["status"] == "ok").sum())],
            ]
            if table[0][0] + table[1][0] > 0:
                row["fisher_p"] = float(st.fisher_exact(table).pvalue)
        rows.append(row)
    return rows


def not_converged(ok: pd.DataFrame) -> int:
    """Runs whose best validation epoch is their last epoch (still improving when stopped)."""
    if not {"best_epoch", "epochs_run"} <= set(ok):
        return 0
    best = pd.to_numeric(ok["best_epoch"], errors="coerce")
    last = pd.to_numeric(ok["epochs_run"], errors="coerce")
    return int((best >= last).sum())


def rank_check(runs: pd.DataFrame, experiments: list[str], metric: str, sign: int) -> dict:
    """Kruskal-Wallis where a run that did not finish normally ranks worst (below every
    finished run) instead of being dropped."""
    values = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else None
    if values is None:
        return {"p": math.nan, "note": "no metric"}
    scores = sign * values
    worst = scores[runs["status"] == "ok"].min()
    scores = scores.where(runs["status"] == "ok", worst - 1 if pd.notna(worst) else -1.0)
    samples = [scores[runs["experiment"] == e].dropna().to_numpy(float) for e in experiments]
    samples = [s for s in samples if len(s)]
    if len(samples) < 2 or len(np.unique(np.concatenate(samples))) < 2:
        return {"p": math.nan, "note": "fewer than two levels, or no variation"}
    return {
        "p": float(st.kruskal(*samples).pvalue),
        "n_failed": int((runs["status"] != "ok").sum()),
    }


def noise_check(values: pd.DataFrame) -> dict[str, Any]:
    """How unequal the levels' seed noise is: the SD range and Brown-Forsythe's test (scipy's
    levene, center="median") on the finished runs. The verdicts do not assume equal noise;
    the descriptive model table does."""
    groups = [values[c].dropna().to_numpy(float) for c in values]
    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < 2:
        return {"p": math.nan}
    sds = [float(np.std(g, ddof=1)) for g in groups]
    p = math.nan
    if max(sds) > 0:
        p = float(st.levene(*groups, center="median").pvalue)
    return {"p": p, "sd_min": min(sds), "sd_max": max(sds)}


def adequacy(levels: list[dict[str, Any]], metric: str, noise: dict[str, Any]) -> list[str]:
    warn = []
    total = sum(lv["n_ok"] for lv in levels)
    late = sum(lv["n_not_converged"] for lv in levels)
    if total and late:
        warn.append(
            f"{late} of {total} finished runs had their best epoch at the last epoch "
            "(not converged: more epochs may change the answer)"
        )
    steps = [lv["optimizer_steps"] for lv in levels if math.isfinite(lv["optimizer_steps"])]
    if steps and min(steps) > 0 and max(steps) / min(steps) >= 1.5:
        warn.append(
            f"optimizer steps differ {max(steps) / min(steps):.1f}x across levels "
            f"({min(steps):.0f} to {max(steps):.0f}): at a fixed epoch budget, "
            "larger batches get fewer updates"
        )
    clipped = [lv["label"] for lv in levels if lv["ci_clipped"]]
    if clipped:
        warn.append(
            f"95% CI of {', '.join(clipped)} leaves {metric}'s range and is clipped "
            "in the tables (few seeds, wide spread)"
        )
    failed = [f"{lv['label']} {lv['n_failed']}/{lv['n_runs']}" for lv in levels if lv["n_failed"]]
    if failed:
        warn.append(
            "runs that did not finish normally (excluded from means and tests, so verdicts "
            "hold among finished seeds; ranked worst in the rank check): " + ", ".join(failed)
        )
    unequal = math.isfinite(noise.get("p", math.nan)) and noise["p"] < 0.05
    if unequal and noise["sd_min"] > 0 and noise["sd_max"] / noise["sd_min"] >= 4:
        warn.append(
            f"seed noise differs {noise['sd_max'] / noise['sd_min']:.0f}x across levels (SD "
            f"{noise['sd_min']:.2g} to {noise['sd_max']:.2g}, Brown-Forsythe p = "
            f"{noise['p']:.3g}): the verdicts use per-seed tests, valid under unequal noise; "
            "the descriptive model table assumes equal noise"
        )
    return warn
