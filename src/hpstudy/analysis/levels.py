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


def _column(runs: pd.DataFrame, name: str) -> np.ndarray:
    if name not in runs:
        return np.full(len(runs), np.nan)
    return pd.to_numeric(runs[name], errors="coerce").to_numpy(float)


def level_table(
    runs: pd.DataFrame,
    experiments: list[str],
    labels: dict[str, str],
    metric: str,
    baseline: str | None,
) -> list[dict[str, Any]]:
    """One row per level: runs, finished, failed (by status), mean, SD and t-interval of the
    metric over finished seeds (clipped to its range), optimizer steps, runs still
    improving at their last epoch (best epoch = last epoch), and Fisher's exact test of its
    failure rate against the baseline's."""
    exp = runs["experiment"].to_numpy()
    status = runs["status"].to_numpy()
    ok = status == "ok"
    y, steps = _column(runs, metric), _column(runs, "optimizer_steps")
    late = _column(runs, "best_epoch") >= _column(runs, "epochs_run")
    bounds = BOUNDS.get(metric)
    base = exp == baseline if baseline else None
    rows = []
    for e in experiments:
        mine = exp == e
        fin = mine & ok
        mean, sd, lo, hi = t_interval(y[fin][~np.isnan(y[fin])])
        clipped = False
        if bounds and math.isfinite(hi) and (hi > bounds[1] or lo < bounds[0]):
            lo, hi, clipped = max(lo, bounds[0]), min(hi, bounds[1]), True
        n_runs, n_ok = int(mine.sum()), int(fin.sum())
        bad, counts = np.unique(status[mine & ~ok].astype(str), return_counts=True)
        row = {
            "experiment": e,
            "label": labels[e],
            "n_runs": n_runs,
            "n_ok": n_ok,
            "n_failed": n_runs - n_ok,
            "statuses": {str(k): int(v) for k, v in zip(bad, counts, strict=True)},
            "mean": mean,
            "sd": sd,
            "ci_low": lo,
            "ci_high": hi,
            "ci_clipped": clipped,
            "optimizer_steps": (
                float(np.nanmean(steps[fin])) if np.isfinite(steps[fin]).any() else math.nan
            ),
            "n_not_converged": int(late[fin].sum()),
            "fisher_p": math.nan,
        }
        if base is not None and e != baseline and base.any():
            base_failed = int((base & ~ok).sum())
            table = [[row["n_failed"], n_ok], [base_failed, int((base & ok).sum())]]
            if row["n_failed"] + base_failed > 0:
                row["fisher_p"] = float(st.fisher_exact(table).pvalue)
        rows.append(row)
    return rows


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
