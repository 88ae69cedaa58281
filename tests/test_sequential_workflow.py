"""Sequential seeds in the real workflow (issue 11): the dry run shows round 1 and says the
DAG may grow; a question decided in round 1 keeps its seeds while an open one gets more; a
study stopped after round 1 resumes in round 2 without training a finished seed again."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_snakemake, write_workdir
from test_workflow_e2e import job_counts

from hpstudy.study import load_study

TINY_SEQ = """
name: tinyseq
description: an identical-by-construction pair (decided in round 1) and an open contrast
seeds: {initial: 2, max: 3, step: 1}
sesoi: 0.001
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2, seed: 1}}
base: {epochs: 1, batch_size: 8, diagnostics_every: 1}
groups:
  loading:
    baseline: nw0
    fixed: {data_path: dataloader, epochs: 1}
    grid: {num_workers: [0, 2]}
    expect: {none: true}
  lr:
    baseline: lr1e-3
    grid: {lr: [1.0e-3, 3.0e-4]}
    contrasts:
      - {name: high_vs_low, a: lr1e-3, b: lr3e-4, expect: a_better}
"""


def test_dry_run_shows_round_1_of_the_shipped_sequential_study(tmp_path):
    text = (REPO / "config/studies/quick_sequential.yaml").read_text()
    work = write_workdir(tmp_path, text, "quick_sequential")
    out = run_snakemake(work, "-n", "--cores", "1").stdout
    counts = job_counts(out)
    study = load_study(REPO / "config/studies/quick_sequential.yaml")
    assert counts["train_round"] == counts["extract_round"] == len(study.configs())
    assert counts["decide_round"] == 1 and "train" not in counts
    assert "checkpoint jobs" in out  # Snakemake says more rounds may follow


@pytest.mark.slow
def test_a_decided_group_stops_an_open_one_gets_seeds_and_a_stopped_study_resumes(tmp_path):
    work = write_workdir(
        tmp_path, TINY_SEQ, "tinyseq", synthetic={"n_images": 40, "image_size": 48, "seed": 2}
    )
    results = work / "results/tinyseq"
    # stop after round 1 (as a killed study would be), then run the whole study
    run_snakemake(work, "--cores", "2", str(results / "rounds/round1.yaml"))
    r1 = yaml.safe_load((results / "rounds/round1.yaml").read_text())
    status = {(q["group"], q["contrast"]): q for q in r1["questions"]}
    assert status[("loading", "(group)")]["verdict"] == "identical by construction"
    assert status[("loading", "(group)")]["status"] == "decided"
    assert status[("lr", "high_vs_low")]["status"] == "open"
    assert {a["experiment"] for a in r1["added"]} == {"lr-lr1e-3", "lr-lr3e-4"}
    assert not r1["done"]
    assert not (results / "summary.csv").exists()

    run_snakemake(work, "--cores", "2")
    r2 = yaml.safe_load((results / "rounds/round2.yaml").read_text())
    assert r2["done"] and r2["seeds"]["lr-lr3e-4"] == 3
    assert r2["seeds"]["loading-nw0"] == 2
    summary = pd.read_csv(results / "summary.csv")
    seeds = summary.groupby("experiment")["seed"].nunique()
    assert seeds["loading-nw0"] == seeds["loading-nw2"] == 2
    assert seeds["lr-lr1e-3"] == seeds["lr-lr3e-4"] == 3
    assert set(summary.loc[summary["seed"] == 2, "round"]) == {2}
    assert set(summary.loc[summary["seed"] < 2, "round"]) == {1}
    verdicts = pd.read_csv(results / "verdicts.csv").set_index(["group", "contrast"])
    assert verdicts.loc[("loading", "(group)"), "round"] == 1
    assert verdicts.loc[("loading", "(group)"), "seeds"] == 2
    assert verdicts.loc[("lr", "high_vs_low"), "seeds"] == 3
    # round 2 trained only the new seed of each configuration it extended
    log = (work / "results/logs/train/tinyseq/round2").glob("*.log")
    text = "".join(p.read_text() for p in log)
    assert "seed 0: finished earlier" in text and "seed 2: training" in text
    assert (work / "reports/tinyseq/report.md").stat().st_size > 1000
