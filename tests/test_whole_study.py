"""The "Whole study" views: the variance each term of a group's model explains (from the
analysis' own fitted models), every attempt of every run (timeline.csv) and the compute it
spent (compute.csv), and the section with its three figures in a rendered report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from test_report import check_figures, write_run

from hpstudy import attempts, figures
from hpstudy.aggregate import aggregate_study, compute_table, timeline_table
from hpstudy.analysis import analyse_group
from hpstudy.atomic import write_csv, write_json
from hpstudy.extract import write_extract
from hpstudy.report import render
from hpstudy.study import load_study


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
STUDY = """
name: views
description: a 2x2 grid and a one-factor group sharing a configuration
seeds: 3
sesoi: 0.02
dataset: {name: microbeads, image_size: 32}
base: {epochs: 2, batch_size: 16, lr: 1.0e-3, scheduler: none}
groups:
  grid:
    grid: {batch_size: [16, 64], scheduler: [none, cosine]}
  lr:
    baseline: lr1e-3
    grid: {lr: [1.0e-4, 1.0e-3, 1.0e-2]}
"""


def build(root):
    """A results folder as the workflow leaves it (real extract and aggregate), every run
    with the attempt records training keeps."""
    study_file = root / "views.yaml"
    study_file.write_text(STUDY)
    study = load_study(study_file)
    manifest = root / "prepared" / "manifest.json"
    write_json(
        manifest,
        {
            "task": "regression",
            "content_sha256": "ab" * 32,
            "source_sha256": "cd" * 32,
            "n_samples": 120,
            "split_sizes": {"train": 84, "val": 18, "test": 18},
            "image_shape": [1, 32, 32],
            "source": "synthetic",
            "data_quality": [],
            "num_classes": 0,
        },
    )
    res, records, t = root / "results" / "views", [], 1.7e9
    noise = np.random.default_rng(3).normal(0, 0.01, size=100)
    for cfg, exps in study.configs().items():
        c = exps[0].config
        for seed in study.seeds:
            r2 = 0.6 + 0.2 * (c.batch_size == 16) + 0.05 * (c.scheduler == "cosine")
            r2 += 0.01 * seed + noise[len(records) * 3 + seed]
            run = res / "runs" / cfg / f"seed{seed}"
            write_run(run, exps[0], seed, r2, "regression", "test_r2")
            metrics = json.loads((run / "metrics.json").read_text())
            metrics["attempt_records"] = [
                {
                    "attempt": 1,
                    "start": t,
                    "end": t + 40,
                    "wall_s": 40.0,
                    "host": "node01",
                    "job_id": None,
                    "ended": attempts.FINISHED,
                    "submitted": None,
                    "threads": 2,
                    "device": "cpu",
                    "gpu": None,
                }
            ]
            write_json(run / "metrics.json", metrics)
            t += 45
        record = res / "records" / f"{cfg}.json"
        write_extract(
            res / "runs" / cfg,
            cfg,
            study.seeds,
            None,
            record,
            record.with_suffix(".curves.csv"),
            record.with_suffix(".layers.csv.gz"),
        )
        records.append(record)
    stems = [str(r).removesuffix(".json") for r in records]
    aggregate_study(
        study_file,
        manifest,
        records,
        res / "summary.csv",
        res / "study.json",
        res / "groups",
        out_stats=res / "stats.json",
        curves=[f"{s}.curves.csv" for s in stems],
        layers=[f"{s}.layers.csv.gz" for s in stems],
        out_curves=res / "curves.csv.gz",
        out_layers=res / "layers.csv.gz",
        out_verdicts=res / "verdicts.csv",
        out_recommended=res / "recommended.yaml",
        out_timeline=res / "timeline.csv",
        out_compute=res / "compute.csv",
    )
    write_csv(res / "experiments.tsv", study.table())
    out = root / "reports" / "views"
    render(
        res / "study.json",
        res / "summary.csv",
        {p.stem: p for p in sorted((res / "groups").glob("*.csv"))},
        out / "report.md",
        out / "report.html",
        out / "figures",
        curves=res / "curves.csv.gz",
        layers=res / "layers.csv.gz",
        experiments=res / "experiments.tsv",
    )
    return {"results": res, "report": out / "report.md", "html": out / "report.html"} | {
        "figures": out / "figures"
    }


def test_the_report_has_the_whole_study_section(tmp_path):
    paths = build(tmp_path)
    files = check_figures(paths)  # valid PNGs, each referenced once, embedded in the HTML
    assert {"parallel_coordinates.png", "variance_share.png", "timeline.png"} <= set(files)
    text = paths["report"].read_text()
    section = text.split("## Whole study", 1)[1].split("## Training diagnostics")[0]
    timeline = pd.read_csv(paths["results"] / "timeline.csv")
    assert len(timeline) == 6 * 3  # 6 configurations (one shared) x 3 seeds, once each
    compute = pd.read_csv(paths["results"] / "compute.csv").set_index("scope")
    assert compute.loc["study", "cpu_h"] == pytest.approx(18 * 40 * 2 / 3600)
    assert compute.loc["grid", "runs"] == 12 and compute.loc["lr", "runs"] == 9  # one shared
    assert f"| **study** | 6 | 18 | 18 | 0 | 0 | {figures_fmt(18 * 40 / 3600)} |" in section
    stats = json.loads((paths["results"] / "stats.json").read_text())
    for group in ("grid", "lr"):
        terms = stats["groups"][group]["variance"]["terms"]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{group}` |"))
        for t in terms:
            assert f"{t['term']} {100 * t['share']:.1f}%" in row
    assert "Queue wait: not known" in section
    assert yaml.safe_load((paths["results"] / "recommended.yaml").read_text())


def figures_fmt(value: float) -> str:
    from hpstudy.formatting import fmt

    return fmt(value)
