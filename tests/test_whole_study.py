"""The "Whole study" views: the variance each term of a group's model explains (from the
analysis' own fitted models), every attempt of every run (timeline.csv) and the compute it
spent (compute.csv), and the section with its three figures in a rendered report (the
synthetic study of test_report.py, built once: conftest's `synth`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from test_report import ATTEMPT_THREADS, ATTEMPT_WALL_S, check_figures

from hpstudy import attempts, figures
from hpstudy.analysis import analyse_group
from hpstudy.study import load_study
from hpstudy.timeline import compute_table, timeline_table


# -- variance shares -------------------------------------------------------------------
def factorial_runs(effect_a: float, effect_b: float, seed_effect: float = 0.0, noise=0.01):
    """A 2x2 grid over a and b, 4 seeds: y = 0.5 + effect_a [a=2] + effect_b [b=y] +
    seed_effect * seed + noise."""
    rng = np.random.default_rng(7)
    configs, rows = {}, []
    for a in (1, 2):
        for b in ("x", "y"):
            exp = f"g-a{a}{b}"
            configs[exp] = {"label": f"a{a}{b}", "a": a, "b": b}
            for seed in range(4):
                y = 0.5 + effect_a * (a == 2) + effect_b * (b == "y") + seed_effect * seed
                rows.append(
                    {
                        "experiment": exp,
                        "group": "g",
                        "seed": seed,
                        "status": "ok",
                        "test_r2": y + noise * rng.normal(),
                    }
                )
    spec = {"experiments": list(configs), "factors": ["a", "b"], "kind": "grid"}
    return spec, pd.DataFrame(rows), configs


def shares(result) -> dict[str, float]:
    return {t["term"]: t["share"] for t in result["variance"]["terms"]}


def test_a_factor_that_explains_everything_gets_all_the_variance():
    spec, runs, configs = factorial_runs(effect_a=0.3, effect_b=0.0)
    res = analyse_group("g", spec, runs, configs, "test_r2", 0.02)
    share = shares(res)
    assert set(share) == {"a", "b", "a:b", "seed", "residual"}
    assert share["a"] > 0.99 and share["b"] < 0.005 and share["a:b"] < 0.005
    assert sum(share.values()) == pytest.approx(1.0)  # balanced: the terms add up
    # the very sums of squares of the ANOVA table the report prints for this group
    anova = {t["term"]: t["sum_sq"] for t in res["anova"]}
    for term in res["variance"]["terms"]:
        raw = {"seed": "C(seed)", "residual": "Residual"}.get(term["term"], term["term"])
        assert term["sum_sq"] == pytest.approx(anova[raw])
    assert res["variance"]["model"] == "y ~ (a + b)**2 + C(seed)"


def test_seeds_that_explain_everything_leave_nothing_to_the_factors():
    spec, runs, configs = factorial_runs(effect_a=0.0, effect_b=0.0, seed_effect=0.1)
    share = shares(analyse_group("g", spec, runs, configs, "test_r2", 0.02))
    assert share["seed"] > 0.98 and share["a"] < 0.01 and share["b"] < 0.01


def test_an_unbalanced_design_shows_what_type_ii_cannot_attribute():
    spec, runs, configs = factorial_runs(effect_a=0.3, effect_b=0.1, noise=0.05)
    runs.loc[0, "status"] = "diverged"  # one failed run: the design is no longer balanced
    share = shares(analyse_group("g", spec, runs, configs, "test_r2", 0.02))
    assert "not attributable (unbalanced design)" in share
    assert sum(share.values()) == pytest.approx(1.0)


def test_one_factor_groups_name_the_factor_of_their_model():
    spec, runs, configs = factorial_runs(effect_a=0.3, effect_b=0.0)
    two = ["g-a1x", "g-a2x"]
    runs = runs[runs["experiment"].isin(two)]
    trend = {"experiments": two, "factors": ["a"], "kind": "grid"}
    trend["expect"] = {"trend": "increasing", "scale": "log2"}
    res = analyse_group("g", trend, runs, configs, "test_r2", 0.02)
    assert res["variance"]["model"] == "y ~ log2(a) + C(seed)"
    assert shares(res)["a (linear in log2(a))"] > 0.99
    omnibus = {"experiments": two, "factors": ["a"], "kind": "list"}
    res = analyse_group("g", omnibus, runs, configs, "test_r2", 0.02)
    assert shares(res)["configuration"] > 0.99 and "variance" not in res["omnibus"]
    assert res["variance"]["model"] == "y ~ C(configuration) + C(seed)"


# -- timeline and compute ----------------------------------------------------------------
SHARED = """
name: views
seeds: 2
dataset: {name: microbeads, image_size: 32}
base: {epochs: 2, batch_size: 16, lr: 1.0e-3}
groups:
  bs:
    baseline: bs16
    grid: {batch_size: [8, 16]}
  lr:
    baseline: lr1e-3
    grid: {lr: [1.0e-4, 1.0e-3, 1.0e-2]}
"""


def record_attempts(checkpoint, plan, monkeypatch):
    """Real attempt records (hpstudy.attempts) of one run: (start, end or None, why, env)."""
    for start, end, why, env in plan:
        for var in (*attempts.JOB_ID_VARS, attempts.SUBMIT_TIME_VAR):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        attempts.begin(
            checkpoint, now=start, resources={"threads": 4, "device": "cuda", "gpu": "1"}
        )
        if end is not None:
            attempts.end(checkpoint, why, now=end)


def test_timeline_and_compute_count_every_attempt_once(tmp_path, monkeypatch):
    study_file = tmp_path / "views.yaml"
    study_file.write_text(SHARED)
    study = load_study(study_file)
    shared = next(cfg for cfg, exps in study.configs().items() if len(exps) == 2)
    other = next(cfg for cfg, exps in study.configs().items() if len(exps) == 1)
    missing_exp = study.configs()[other][0].id
    t0 = 1.7e9
    pbs = {"PBS_JOBID": "41.pbs", attempts.SUBMIT_TIME_VAR: str(int(t0))}
    # the shared run, seed 0: killed at walltime under PBS after a 5-minute queue, then a
    # SIGKILLed local attempt (no end), then a finished one
    ckpt = tmp_path / "checkpoints" / shared / "seed0.pt"
    record_attempts(
        ckpt,
        [
            (t0 + 300, t0 + 900, "interrupted by a signal (SIGTERM: walltime)", pbs),
            (t0 + 1000, None, None, {}),
            (t0 + 1100, t0 + 1400, attempts.FINISHED, {}),
        ],
        monkeypatch,
    )
    done = attempts.summary(ckpt, now=t0 + 1400)
    summary = pd.DataFrame(
        [  # the shared run appears once per experiment (summary.csv), its attempts count once
            {"experiment": e.id, "config_hash": shared, "seed": 0, "device": "cuda"}
            | {"attempt_records": json.dumps(done["attempt_records"])}
            for e in study.configs()[shared]
        ]
    )
    # a run with no results: its one failed attempt is only beside its checkpoint
    failed = tmp_path / "checkpoints" / other / "seed1.pt"
    record_attempts(failed, [(t0 + 200, t0 + 260, "failed: exit status 1", {})], monkeypatch)
    table = timeline_table(study, summary, tmp_path, [f"{missing_exp}/seed1"])
    assert list(table["outcome"]) == ["failed", "interrupted", "killed", "finished"]
    assert table["groups"].iloc[1] == "bs,lr"
    assert list(table["host"].notna()) == [True] * 4 and set(table["gpu"]) == {"1"}
    waits = table["queue_wait_s"].tolist()
    assert waits[1] == 300 and all(math.isnan(w) for w in (waits[0], *waits[2:]))
    compute = compute_table(study, table).set_index("scope")
    walls = 60 + 600 + 300  # seconds; the killed attempt's time is unknown, not guessed
    assert compute.loc["study", "runs"] == 2 and compute.loc["study", "attempts"] == 4
    assert compute.loc["study", "attempts_unknown"] == 1
    assert compute.loc["study", "attempts_not_finished"] == 3
    assert compute.loc["study", "cpu_h"] == pytest.approx(4 * walls / 3600)
    assert compute.loc["study", "gpu_h"] == pytest.approx(walls / 3600)
    # the shared run counts in both groups; the failed run only in its own
    own = "bs" if missing_exp.startswith("bs") else "lr"
    rest = "lr" if own == "bs" else "bs"
    assert compute.loc[own, "gpu_h"] == pytest.approx(walls / 3600)
    assert compute.loc[rest, "gpu_h"] == pytest.approx((600 + 300) / 3600)
    fig = figures.timeline_figure(table)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 1 and labels[0].endswith("/ GPU 1")  # no overlap: one lane
    both = table.copy()  # two attempts at once on one GPU: two rows
    both.loc[0, ["start", "end"]] = both.loc[1, ["start", "end"]].to_numpy() + 10
    labels = [t.get_text() for t in figures.timeline_figure(both).axes[0].get_yticklabels()]
    assert [t.rsplit(", ", 1)[1] for t in labels] == ["slot 1", "slot 2"]
    assert "queue wait" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_parallel_coordinates_axes_follow_the_factor_kinds():
    runs = pd.DataFrame(
        {
            "scheduler": ["none", "cosine", "step", "none"],
            "lr": [1e-4, 1e-3, 1e-2, 1e-3],
            "batch_size": [16, 32, 16, 32],
            "test_r2": [0.5, 0.7, 0.6, 0.9],
        }
    )
    fig = figures.parallel_coordinates_figure(runs, ["scheduler", "lr", "batch_size"], "test_r2")
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["scheduler", "learning rate (log)", "batch size (samples)", label_r2()]
    texts = {t.get_text() for t in ax.texts}
    assert {"cosine", "none", "step", "0.0001", "0.01", "16", "32"} <= texts
    (lines,) = ax.collections
    assert len(lines.get_segments()) == 4
    best = lines.get_segments()[-1]  # drawn last: the best run (0.9: none, 1e-3, 32)
    assert best[:, 1].tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0])


def label_r2() -> str:
    return figures.label("test_r2")


# -- the section in a rendered report --------------------------------------------------------
# `synth` (tests/conftest.py) is test_report.py's study: 21 experiments in 6 groups, 18
# configurations (bs32 serves three groups, bs64 two), 3 seeds, every run one finished attempt
# of ATTEMPT_WALL_S seconds on ATTEMPT_THREADS CPU threads.
CONFIGS, SEEDS = 18, 3
GROUP_CONFIGS = {
    "batch_size": 4,
    "lr_scaling": 4,
    "grad_accumulation": 4,
    "memory": 4,
    "scheduler": 3,
    "determinism": 2,
}


def test_the_report_has_the_whole_study_section(synth):
    files = check_figures(synth)  # valid PNGs, each referenced once, embedded in the HTML
    assert {"parallel_coordinates.png", "variance_share.png", "timeline.png"} <= set(files)
    text = synth["report"].read_text()
    section = text.split("## Whole study", 1)[1].split("## Training diagnostics")[0]
    timeline = pd.read_csv(synth["results"] / "timeline.csv")
    runs = CONFIGS * SEEDS
    assert len(timeline) == runs  # each configuration x seed once, also when shared
    compute = pd.read_csv(synth["results"] / "compute.csv").set_index("scope")
    cpu_h = runs * ATTEMPT_WALL_S * ATTEMPT_THREADS / 3600
    assert compute.loc["study", "cpu_h"] == pytest.approx(cpu_h)
    for group, configs in GROUP_CONFIGS.items():  # a shared run counts in each of its groups
        assert compute.loc[group, "runs"] == configs * SEEDS, group
    wall_h = figures_fmt(runs * ATTEMPT_WALL_S / 3600)
    assert f"| **study** | {CONFIGS} | {runs} | {runs} | 0 | 0 | {wall_h} |" in section
    stats = json.loads((synth["results"] / "stats.json").read_text())
    shown = [g for g, res in stats["groups"].items() if res.get("variance")]
    assert len(shown) >= 4, shown  # a model per group with differing levels
    for group in shown:
        terms = stats["groups"][group]["variance"]["terms"]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{group}` |"))
        for t in terms:
            assert f"{t['term']} {100 * t['share']:.1f}%" in row
    assert "Queue wait: not known" in section
    assert yaml.safe_load((synth["results"] / "recommended.yaml").read_text())


def figures_fmt(value: float) -> str:
    from hpstudy.formatting import fmt

    return fmt(value)
