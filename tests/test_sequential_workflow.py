"""Sequential seeds in the real workflow (issue 11): shipped studies run sequentially with
`--config seeds=...` (the dry run shows round 1, says the DAG may grow and counts the runs
planned so far); the cluster profiles dry-run the rounds checkpoint; a question decided in
round 1 keeps its seeds while an open one gets more, and the report says so; a workflow
killed in the middle of round 2 resumes to exactly the result of an uninterrupted run.

Time: one run, stopped after round 1 and copied (module fixtures shared by the assertions);
the run goes on uninterrupted, its copy is killed in round 2 and resumed up to the aggregate
outputs (no report); 40 generated images of 32 px, 1 epoch, 3 configurations."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml
from conftest import REPO, run_snakemake, snakemake_cmd, write_workdir
from test_workflow_e2e import job_counts

from hpstudy.study import load_study
from hpstudy.studyfile import parse_seeds_override

TINY_SEQ = """
name: tinyseq
description: >-
  an identical-by-construction pair (decided in round 1) and an open contrast; cl0 and
  lr3e-4 are one configuration (lr 3e-4 is the default), trained once
# futility off: at 2 seeds the open contrast's conditional power is low and futility (on by
# default, tested in test_sequential.py) would stop it; here the round mechanics are tested
seeds: {initial: 2, max: 3, step: 1, futility: false}
sesoi: 0.001
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2, seed: 1}}
base: {epochs: 1, batch_size: 8, diagnostics_every: 0}
groups:
  cleanup:
    baseline: cl0
    grid: {cleanup_every: [0, 1]}
    expect: {none: true}
  lr:
    baseline: lr1e-3
    grid: {lr: [1.0e-3, 3.0e-4]}
    contrasts:
      - {name: high_vs_low, a: lr1e-3, b: lr3e-4, expect: a_better}
"""


# the data of every run of this module: the same generated images, no TensorBoard events
DATA = {"synthetic": {"n_images": 40, "image_size": 32, "seed": 2}, "tensorboard": False}
OVERRIDE = "seeds={initial: 3, max: 7, step: 2}"
HERE = {"results_dir": "results", "reports_dir": "reports", "studies_dir": "studies"}


def test_dry_run_runs_shipped_studies_sequentially_with_the_seeds_override(tmp_path):
    """quick and bottleneck, fixed in their files, run sequentially from the command line
    through the Slurm profile (no scheduler needed for -n): round 1 only, its train jobs
    with the profile's GPU request, and the runs planned so far (not max seeds) in the
    start line."""
    work = write_workdir(tmp_path, "", "unused", studies_dir=str(REPO / "config/studies"))
    proc = run_snakemake(
        work, "-n", "--profile", "profiles/slurm", "--config", "study=quick,bottleneck", OVERRIDE
    )
    counts = job_counts(proc.stdout)
    seeds = parse_seeds_override(OVERRIDE.split("=", 1)[1])
    names = ("quick", "bottleneck")
    studies = [load_study(REPO / f"config/studies/{s}.yaml", seeds) for s in names]
    configs = [len(s.configs()) for s in studies]
    assert counts["train_round"] == counts["extract_round"] == sum(configs)
    assert counts["decide_round"] == 2 and "train" not in counts
    assert "checkpoint jobs" in proc.stdout  # Snakemake says more rounds may follow
    jobs = [j.split("\n\n")[0] for j in proc.stdout.split("rule train_round:")[1:]]
    assert all("k=1," in j and "gpu=1" in j and "mem_mb=32000" in j for j in jobs), jobs[0]
    for study, n in zip(studies, configs, strict=True):
        assert (
            f"hpstudy: {study.name}: round 1: {3 * n} runs planned so far, up to {7 * n} "
            "if every question needs max seeds" in proc.stderr
        ), proc.stderr[-2000:]


def test_dry_run_through_the_pbs_profile_shows_round_1(tmp_path):
    """`snakemake -n --profile profiles/pbs` (no qsub needed for -n) on a sequential study:
    round 1's train jobs with the profile's GPU request, then the rounds checkpoint."""
    work = write_workdir(tmp_path, TINY_SEQ, "tinyseq", **DATA)
    out = run_snakemake(work, "-n", "--profile", "profiles/pbs").stdout
    counts = job_counts(out)
    assert counts["train_round"] == 3 and counts["decide_round"] == 1, counts
    jobs = [j.split("\n\n")[0] for j in out.split("rule train_round:")[1:]]
    assert all("k=1," in j and "ngpus=1" in j for j in jobs), jobs[0]
    assert "checkpoint jobs" in out


@pytest.fixture(scope="module")
def after_round_1(tmp_path_factory):
    """The tiny sequential study stopped after round 1 (as a stopped study would be), and a
    copy of that work folder (its paths are relative, so the copy is a study of its own)."""
    work = write_workdir(tmp_path_factory.mktemp("seq"), TINY_SEQ, "tinyseq", **DATA, **HERE)
    run_snakemake(work, "--cores", "2", "results/tinyseq/rounds/round1.yaml")
    copy = tmp_path_factory.mktemp("seq_copy") / "work"
    shutil.copytree(work, copy, symlinks=True)
    return work, copy


@pytest.fixture(scope="module")
def full_run(after_round_1):
    """The study run on from round 1 to the end without interruption."""
    work, _ = after_round_1
    run_snakemake(work, "--cores", "2")
    return work


@pytest.mark.slow
def test_a_decided_group_stops_an_open_one_gets_seeds_and_the_report_says_so(full_run):
    results = full_run / "results/tinyseq"
    r1 = yaml.safe_load((results / "rounds/round1.yaml").read_text())
    status = {(q["group"], q["contrast"]): q for q in r1["questions"]}
    assert status[("cleanup", "(group)")]["verdict"] == "identical by construction"
    assert status[("cleanup", "(group)")]["status"] == "decided"
    assert status[("lr", "high_vs_low")]["status"] == "open"
    assert {a["experiment"] for a in r1["added"]} == {"lr-lr1e-3", "lr-lr3e-4"}
    assert not r1["done"]

    r2 = yaml.safe_load((results / "rounds/round2.yaml").read_text())
    assert r2["done"] and r2["seeds"]["lr-lr3e-4"] == 3
    assert r2["seeds"]["cleanup-cl1"] == 2
    summary = pd.read_csv(results / "summary.csv")
    seeds = summary.groupby("experiment")["seed"].nunique()
    assert seeds["cleanup-cl1"] == 2  # decided in round 1: no more seeds
    # cl0 shares its configuration (and so its runs) with lr3e-4, which round 2 extended
    assert seeds["cleanup-cl0"] == seeds["lr-lr1e-3"] == seeds["lr-lr3e-4"] == 3
    assert set(summary.loc[summary["seed"] == 2, "round"]) == {2}
    assert set(summary.loc[summary["seed"] < 2, "round"]) == {1}
    verdicts = pd.read_csv(results / "verdicts.csv").set_index(["group", "contrast"])
    cleanup, lr = verdicts.loc[("cleanup", "(group)")], verdicts.loc[("lr", "high_vs_low")]
    assert (cleanup["round"], cleanup["seeds"], cleanup["stopped"]) == (1, 2, "decided")
    assert (lr["round"], lr["seeds"]) == (2, 3)
    # the last look (3 of 3 seeds) decides or stops at max; never "open"
    assert lr["stopped"] in ("decided", "at max")
    # runs against max seeds: cleanup 2 configurations x 2 of 3 seeds, lr 2 x 3 of 3
    assert (cleanup["runs"], cleanup["runs_at_max"]) == (4, 6)
    assert (lr["runs"], lr["runs_at_max"]) == (6, 6)
    # the evidence names the interval of the look that decided it, not a 95% CI
    level = r2["levels"][-1]
    assert level < 0.05 and "95% CI" not in lr["evidence"]
    assert f"{100 * (1 - level):.1f}% CI" in lr["evidence"], (level, lr["evidence"])
    study = yaml.safe_load((results / "study.json").read_text())["sequential"]
    # 3 configurations: 2 + 3 + 3 runs of 3 x 3 at max
    assert (study["runs"], study["runs_at_max"], study["runs_saved"]) == (8, 9, 1)
    assert [r["runs"] for r in study["rounds"]] == [6, 2]
    # round 2 trained only the new seed of each configuration it extended
    logs = (full_run / "results/logs/train/tinyseq/round2").glob("*.log")
    text = "".join(p.read_text() for p in logs)
    assert "seed 0: finished earlier" in text and "seed 2: training" in text
    report = (full_run / "reports/tinyseq/report.md").read_text()
    section = report.split("## Sequential seeds")[1].split("\n## ")[0]
    assert "finished in round 2 with **8 runs** of the 9" in section
    assert "**1 run saved (11%)**" in section
    assert "2 to 3 seeds per experiment as its questions needed" in report  # not "3 seeds each"
    assert "| `cleanup` / `(group)` | **identical by construction** | 1 | 2 | decided |" in section
    example = report.split("**Worked example.**")[1].split("\n")[0]
    assert "% CI" in example and "95% CI" not in example, example
    assert "| CI (at its look's level) |" in report and "| 95% CI |" not in report.split("##")[1]


@pytest.mark.slow
def test_status_counts_the_runs_planned_so_far(full_run):
    from hpstudy.status import render, study_status

    status = study_status(
        "tinyseq", full_run / "results", full_run / "studies", workdirs=[full_run]
    )
    assert len(status.runs) == 8 and status.counts["finished"] == 8
    assert render(status).startswith("study tinyseq: finished in round 2: 8 runs, 1 fewer")


@pytest.mark.slow
def test_killed_in_round_2_resumes_to_the_result_of_an_uninterrupted_run(after_round_1, full_run):
    """From the same end of round 1: SIGKILL to the whole workflow (Snakemake and its jobs)
    while round 2 trains a seed, `--unlock`, rerun: the round file, verdicts and every run's
    metrics equal those of the uninterrupted round 2 (training is deterministic per seed on
    the CPU)."""
    _, work = after_round_1
    results = work / "results/tinyseq"
    assert (results / "rounds/round1.yaml").is_file() and not (results / "summary.csv").exists()
    # what a cluster node runs for a round-2 train job: it re-evaluates the round's seeds from
    # round1.yaml, which Snakemake allows only with the checkpoint's output as an input
    cfg = load_study(work / "studies/tinyseq.yaml").experiment("lr-lr1e-3").config_id
    job = f"train_round:study=tinyseq,k=2,cfg={cfg}"
    node = run_snakemake(work, "-n", "--mode", "remote", "--target-jobs", job, "--cores", "1")
    assert f"k=2, cfg={cfg}" in node.stdout, node.stdout[-2000:]
    target = "results/tinyseq/verdicts.csv"  # the aggregate outputs; no report
    cmd = snakemake_cmd(
        "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "2"
    )
    proc = subprocess.Popen(
        [*cmd, target], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if list(results.glob("checkpoints/*/seed2.attempts.log")):  # round 2 trains
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the workflow ended before round 2 trained"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (results / "rounds/round2.yaml").exists()
    assert not (results / "verdicts.csv").exists()

    from hpstudy.status import render, study_status

    waiting = study_status("tinyseq", work / "results", work / "studies", workdirs=[work])
    assert render(waiting).startswith(
        "study tinyseq: round 2: 8 runs planned so far, up to 9 if every question needs"
    )
    run_snakemake(work, "--unlock")
    rerun = run_snakemake(work, "--cores", "2", target)
    assert "hpstudy: tinyseq: round 2: 8 runs planned so far, up to 9" in rerun.stderr

    ref = full_run / "results/tinyseq"
    assert yaml.safe_load((results / "rounds/round2.yaml").read_text()) == yaml.safe_load(
        (ref / "rounds/round2.yaml").read_text()
    )
    assert (results / "verdicts.csv").read_text() == (ref / "verdicts.csv").read_text()
    keys = ["experiment", "seed", "round", "status"]
    metrics = ["test_r2", "test_mse", "test_mae", "best_val_loss", "epochs_run", "best_epoch"]
    got, want = (pd.read_csv(d / "summary.csv") for d in (results, ref))
    metrics = [m for m in metrics if m in want]
    assert len(metrics) >= 4, list(want)
    pd.testing.assert_frame_equal(got[keys + metrics], want[keys + metrics])
