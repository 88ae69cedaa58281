"""The configuration to use: the best mean among distinct configurations whose every seed
finished, compared with the runner-up; and what was excluded, with the verdicts that call an
excluded configuration better among its finished seeds, so the recommendation and the
verdicts say the same thing."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from hpstudy.analysis.design import Runs, higher_is_better
from hpstudy.analysis.inference import identical, linear
from hpstudy.analysis.outputs import json_safe
from hpstudy.analysis.rule import ALPHA

CLAIMS_BETTER = ("supported", "contradicted", "differs")


def _pair(runs: Runs, a: str, b: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seed x {a, b} values (nan = not finished) and which runs exist."""
    return runs.frame(runs.values, [a, b]), runs.frame(runs.ran, [a, b])


def _sort_out(
    levels: list[dict[str, Any]], configs: dict, sign: int, verdicts
) -> tuple[list[dict], list[dict]]:
    """Distinct configurations best first: those whose every seed finished (at least two),
    and those excluded, each with its reason and the verdicts that call it better."""
    seen, candidates, excluded = set(), [], []
    for lv in sorted(
        levels, key=lambda r: (-sign * r["mean"]) if math.isfinite(r["mean"]) else math.inf
    ):
        key = configs.get(lv["experiment"], {}).get("config_hash", lv["experiment"])
        if key in seen:
            continue
        seen.add(key)
        if lv["n_failed"]:
            called = [
                f"{v['group']} / {v['contrast']} ({v['verdict']})"
                for v in verdicts
                if lv["experiment"] in v.get("_better", ())
            ]
            excluded.append(
                {
                    "experiment": lv["experiment"],
                    "reason": f"{lv['n_failed']} of {lv['n_runs']} seeds did not finish "
                    f"normally ({lv['statuses']})",
                    **({"better_among_finished_seeds_in": called} if called else {}),
                }
            )
        elif lv["n_ok"] < 2:
            excluded.append(
                {"experiment": lv["experiment"], "reason": f"only {lv['n_ok']} finished seed(s)"}
            )
        elif math.isfinite(lv["mean"]):
            candidates.append(lv)
    return candidates, excluded


def _runner_up(runs: Runs, best: dict, other: dict, metric: str) -> tuple[dict, str]:
    """The best against the runner-up, paired by seed: the difference, its interval and
    whether they can be told apart; and the recommendation's reason."""
    wide, _ = _pair(runs, best["experiment"], other["experiment"])
    t = linear(wide, {best["experiment"]: 1.0, other["experiment"]: -1.0})
    lo, hi = t.ci(ALPHA)
    distinct = math.isfinite(t.p()) and t.p() < ALPHA
    row = {
        "experiment": other["experiment"],
        "mean": other["mean"],
        "difference": t.estimate,
        "ci_low": lo,
        "ci_high": hi,
        "p": t.p(),
        "method": t.method,
        "distinguishable": distinct,
    }
    reason = f"best mean {metric} among configurations whose every seed finished; " + (
        "it beats the runner-up (95% CI of the difference excludes 0)"
        if distinct
        else "the runner-up cannot be told apart at the seeds run: either is a defensible choice"
    )
    return row, reason


def recommend(
    levels: list[dict[str, Any]],
    runs: Runs,
    configs: dict[str, dict[str, Any]],
    metric: str,
    verdicts: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The best configuration by mean among those whose every seed finished normally (a
    configuration with a failed or diverged seed is never recommended), with the runner-up
    it is compared with (paired by seed). `verdicts`: rows with `_better` (the experiments
    a claim calls better) - an excluded configuration lists them."""
    sign = 1 if higher_is_better(metric) else -1
    candidates, excluded = _sort_out(levels, configs, sign, verdicts)
    out: dict[str, Any] = {
        "metric": metric,
        "direction": "higher is better" if sign > 0 else "lower is better",
        "excluded": excluded,
    }
    if not candidates:
        out.update(
            recommended=None,
            reason="no configuration finished every seed with at "
            "least two seeds; nothing can be recommended",
        )
        return out
    best = candidates[0]
    cfg = {
        k: v
        for k, v in configs.get(best["experiment"], {}).items()
        if k not in ("experiment", "group", "label", "overrides")
    }
    out["recommended"] = {
        "experiment": best["experiment"],
        "label": best["label"],
        "mean": best["mean"],
        "sd": best["sd"],
        "ci_low": best["ci_low"],
        "ci_high": best["ci_high"],
        "n": best["n_ok"],
        "settings": cfg,
    }
    same = []  # configurations whose every seed gives exactly the best one's numbers
    for cand in candidates[1:]:
        wide, ran = _pair(runs, best["experiment"], cand["experiment"])
        if identical(wide, ran, list(wide.columns)):
            same.append(cand["experiment"])
    if same:
        out["identical_results"] = same
    candidates = [c for c in candidates if c["experiment"] not in same]
    if len(candidates) > 1:
        out["runner_up"], out["reason"] = _runner_up(runs, best, candidates[1], metric)
    else:
        out["reason"] = "the only configuration whose every seed finished"
    return json_safe(out)


def identical_configs(configs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Experiments of different groups that resolve to the same config (a shared baseline):
    the same seed gives the same numbers, so they are not independent evidence."""
    by_hash: dict[str, list[str]] = {}
    for exp, cfg in configs.items():
        by_hash.setdefault(cfg.get("config_hash", exp), []).append(exp)
    return [exps for exps in by_hash.values() if len(exps) > 1]
