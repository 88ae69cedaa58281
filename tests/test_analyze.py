"""hpstudy.analyze: a study's questions answered from a table of runs made anywhere (a W&B or
MLflow export, a hand-run script), and the same answers as the workflow on its own
summary.csv (the aggregate step runs this very code)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from test_report import STUDY, Z, build_results

from hpstudy import analyze
from hpstudy.analysis import VERDICT_COLUMNS

SMALL = """
name: small
seeds: 4
sesoi: 0.01
dataset: {name: microbeads, image_size: 32}
base: {epochs: 2, batch_size: 32}
groups:
  batch_size:
    question: Do smaller batches give better R2?
    baseline: bs32
    grid: {batch_size: [16, 32, 64]}
    expect: {trend: decreasing, scale: log2}
  lr:
    question: Does a larger learning rate help?
    baseline: lr3e-4
    grid: {lr: [3.0e-4, 1.0e-3]}
    contrasts:
      - {name: high_vs_low, a: lr1e-3, b: lr3e-4, expect: a_better}
"""
MEANS = {
    "batch_size-bs16": 0.95,
    "batch_size-bs32": 0.90,
    "batch_size-bs64": 0.85,
    "lr-lr3e-4": 0.90,
    "lr-lr1e-3": 0.93,
}


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def table(means=MEANS, seeds=4, noise=0.004, rng=None) -> pd.DataFrame:
    """One row per run, as a hand-run script would write it; bs32 and lr3e-4 are the same
    configuration (the study trains it once) and appear here once, under batch_size-bs32."""
    rng = rng or np.random.default_rng(0)
    block = rng.normal(0, 0.02, seeds)
    rows = [
        {"experiment": e, "seed": s, "test_r2": m + block[s] + rng.normal(0, noise)}
        for e, m in means.items()
        if e != "lr-lr3e-4"
        for s in range(seeds)
    ]
    return pd.DataFrame(rows)


def test_a_table_that_never_went_through_the_workflow(small):
    verdicts = analyze.verdicts(small, table())
    assert list(verdicts.columns) == VERDICT_COLUMNS
    v = verdicts.set_index(["group", "contrast"])
    assert v.loc[("batch_size", "(group)"), "verdict"] == "supported"
    assert v.loc[("lr", "high_vs_low"), "verdict"] == "supported"
    # lr3e-4 (not in the table) is batch_size-bs32's configuration: its runs count there
    assert v.loc[("lr", "high_vs_low"), "n_b"] == 4
    # the loaded mapping answers the same
    same = analyze.verdicts(yaml.safe_load(SMALL), table())
    pd.testing.assert_frame_equal(verdicts, same)


def test_statuses_from_an_export_and_a_failed_run(small):
    runs = table()
    runs["status"] = "finished"
    crashed = (runs["experiment"] == "lr-lr1e-3") & (runs["seed"] == 1)
    runs.loc[crashed, ["status", "test_r2"]] = ["crashed", math.nan]
    runs.loc[runs.index[0], "status"] = None  # missing = finished
    result = analyze.analyse(small, runs)
    row = result["verdicts"].set_index("contrast").loc["high_vs_low"]
    assert (row["failed_a"], row["failed_b"]) == (1, 0)
    assert "among finished seeds" in row["qualifier"]
    excluded = {x["experiment"] for x in result["recommended"]["excluded"]}
    assert "lr-lr1e-3" in excluded


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t: t.assign(experiment=t["experiment"].replace("lr-lr1e-3", "lr-lr1e-2")),
            "experiment 'lr-lr1e-2' is not in study 'small'",
        ),
        (lambda t: t.rename(columns={"test_r2": "r2"}), "no column 'test_r2'"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "seed 0 appears 2 times"),
        (lambda t: t.assign(status="running"), "status 'running'"),
        (lambda t: t.assign(status="done"), "status 'done' is not one of"),
        (
            lambda t: t.assign(test_r2=t["test_r2"].astype(object).where(t.index != 3, "n/a")),
            "is 'n/a', not a number",
        ),
        (lambda t: t.assign(seed=1.5), "seed '1.5' is not a whole number"),
    ],
)
def test_bad_tables_say_what_is_wrong(small, change, message):
    with pytest.raises(analyze.RunsError, match=re.escape(message)):
        analyze.verdicts(small, change(table()))


def test_write_gives_verdicts_recommendation_stats_and_a_report(small, tmp_path):
    result = analyze.analyse(small, table())
    paths = analyze.write(result, tmp_path / "out")
    written = pd.read_csv(paths["verdicts"], keep_default_na=False)
    assert list(written.columns) == VERDICT_COLUMNS
    rec = yaml.safe_load(paths["recommended"].read_text())
    assert rec["recommended"]["experiment"] == "batch_size-bs16"
    assert rec["recommended"]["settings"]["batch_size"] == 16
    text = paths["report"].read_text()
    assert "## Answers to the research questions" in text and "**Rule.**" in text
    for row in written.itertuples():
        assert f"`{row.group}` / `{row.contrast}`" in text


def test_the_workflow_summary_gives_the_workflow_verdicts(tmp_path):
    """The aggregate step's outputs for a synthetic study with trends, contrasts, a factorial
    grid and a diverged run (tests/test_report.py's): analyze on its summary.csv alone (and
    on the same table without the workflow's bookkeeping columns) gives verdicts.csv."""
    paths = build_results(tmp_path, STUDY)
    study_file = paths["study_file"]
    summary = pd.read_csv(paths["results"] / "summary.csv")
    expected = pd.read_csv(paths["results"] / "verdicts.csv", keep_default_na=False)
    got = analyze.verdicts(study_file, summary)
    csv = tmp_path / "verdicts.csv"
    got.to_csv(csv, index=False)
    pd.testing.assert_frame_equal(pd.read_csv(csv, keep_default_na=False), expected)
    # as an export would give it: one row per configuration x seed, a few columns
    bare = summary.drop_duplicates(["config_hash", "seed"])[
        ["experiment", "seed", "status", "test_r2"]
    ]
    assert len(bare) < len(summary)  # shared configurations appear once
    again = analyze.verdicts(study_file, bare)
    assert again["verdict"].tolist() == expected["verdict"].tolist()
    assert np.allclose(
        pd.to_numeric(again["estimate"]), pd.to_numeric(expected["estimate"]), equal_nan=True
    )
    assert set(Z) == {1.0, -1.0, 0.0}  # the synthetic seeds the verdicts were built from


def test_wandb_and_mlflow_recipes(small):
    """The column mappings of docs/report.md, applied to tables shaped like the exports."""
    runs = table()
    wandb = pd.DataFrame(
        {
            "Name": [f"{e}-s{s}" for e, s in zip(runs["experiment"], runs["seed"], strict=True)],
            "State": "finished",
            "experiment": runs["experiment"],  # logged as config.experiment in wandb.init
            "seed": runs["seed"],
            "test_r2": runs["test_r2"],
        }
    )
    recipe = wandb.rename(columns={"State": "status"})[["experiment", "seed", "status", "test_r2"]]
    a = analyze.verdicts(small, recipe)
    mlflow = pd.DataFrame(
        {
            "run_id": range(len(runs)),
            "status": "FINISHED",
            "params.experiment": runs["experiment"],
            "params.seed": runs["seed"].astype(str),
            "metrics.test_r2": runs["test_r2"],
        }
    )
    recipe = mlflow.rename(
        columns={
            "params.experiment": "experiment",
            "params.seed": "seed",
            "metrics.test_r2": "test_r2",
        }
    )
    b = analyze.verdicts(small, recipe)
    pd.testing.assert_frame_equal(a, b)


def test_the_command_writes_the_answers_and_refuses_a_bad_table(small, tmp_path, capsys):
    from hpstudy import cli

    runs = tmp_path / "runs.csv"
    table().to_csv(runs, index=False)
    out = tmp_path / "answers"
    assert cli.main(["analyze", str(small), str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("small: 3 questions from 20 runs: ")
    assert {p.name for p in out.iterdir()} >= {"verdicts.csv", "recommended.yaml", "report.md"}
    table().rename(columns={"test_r2": "r2"}).to_csv(runs, index=False)
    assert cli.main(["analyze", str(small), str(runs), "--out", str(out)]) == 2
    assert "no column 'test_r2'" in capsys.readouterr().err


def test_python_m_hpstudy_analyze_is_the_command(small, tmp_path):
    import subprocess
    import sys

    runs = tmp_path / "runs.csv"
    table().to_csv(runs, index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "hpstudy.analyze", str(small), str(runs), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "verdicts.csv").is_file()
