"""The real workflow on a tiny study: dry-run job counts, a full run, and a report whose
numbers match summary.csv. The full run and the tests that read it are `slow` (the default
`uv run pytest` runs the dry runs and the lint; `-m slow` the rest)."""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest
from conftest import REPO, run_snakemake, snakemake_cmd, write_workdir

from hpstudy.formatting import fmt
from hpstudy.study import load_study

TINY = """
name: tiny
description: two groups, two seeds, two epochs on 32 px generated microbeads
seeds: 2
sesoi: 0.05
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2, seed: 1}}
base: {epochs: 2, batch_size: 8, diagnostics_every: 2}
groups:
  batch_size:
    question: Do smaller batches help?
    baseline: bs8
    grid: {batch_size: [4, 8]}
    expect: {trend: decreasing, scale: log2}
  scheduler:
    baseline: none
    grid: {scheduler: [none, cosine]}
    contrasts:
      - {name: cosine_vs_none, a: cosine, b: none, expect: a_better}
"""


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("study", ["quick"])
def test_dry_run_lists_one_train_job_per_distinct_configuration(tmp_path, study):
    work = write_workdir(tmp_path, (REPO / f"config/studies/{study}.yaml").read_text(), study)
    out = run_snakemake(work, "-n", "--cores", "1").stdout
    counts = job_counts(out)
    expected = load_study(REPO / f"config/studies/{study}.yaml")
    assert counts["train"] == len(expected.configs()) < len(expected.experiments)
    # every train job asks for a walltime (its seeds' estimate: tests/test_cost.py)
    assert len(re.findall(r"runtime=\d+", out)) >= counts["train"]
    assert counts["extract"] == counts["train"]
    assert counts["prepare"] == counts["generate_microbeads"] == counts["report"] == 1


def test_lint_is_clean():
    proc = subprocess.run(
        snakemake_cmd("--lint"), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = write_workdir(
        tmp_path_factory.mktemp("e2e"),
        TINY,
        synthetic={"n_images": 40, "image_size": 48, "seed": 2},
    )
    run_snakemake(work, "--cores", "2")
    return work


@pytest.mark.slow  # the `finished` fixture runs the whole workflow (~1 min)
def test_outputs_exist(finished):
    results = finished / "results/tiny"
    experiments = pd.read_csv(results / "experiments.tsv", sep="\t")
    assert list(experiments["experiment"]) == [
        "batch_size-bs4",
        "batch_size-bs8",
        "scheduler-none",
        "scheduler-cosine",
    ]
    assert experiments.loc[3, "scheduler"] == "cosine"
    # bs8 and scheduler-none are the same configuration: trained once, shared
    assert experiments["config_hash"].nunique() == 3
    assert experiments.loc[1, "shared_with"] == "scheduler-none"
    assert sorted(p.name for p in (results / "runs").iterdir()) == sorted(
        experiments["config_hash"].unique()
    )
    summary = pd.read_csv(results / "summary.csv")
    assert len(summary) == 8 and set(summary["seed"]) == {0, 1}
    assert (summary["status"] == "ok").all()
    shared = summary[summary["shared"]]
    assert set(shared["experiment"]) == {"batch_size-bs8", "scheduler-none"}
    first, second = (
        shared[shared["experiment"] == e].set_index("seed")["test_r2"]
        for e in ("batch_size-bs8", "scheduler-none")
    )
    assert first.equals(second)  # the same runs, not two trainings
    assert {"converged", "optimizer_steps", "best_epoch", "job_wall_s"} <= set(summary)
    study = json.loads((results / "study.json").read_text())
    assert list(study["groups"]) == ["batch_size", "scheduler"]  # study order kept
    assert "runs" not in study and "experiments" not in study  # the tables live in CSVs
    curves = pd.read_csv(results / "curves.csv.gz")
    assert len(curves) == 8 * 2  # experiment x seed x epoch
    for name in ("report.md", "report.html"):
        assert (finished / "reports/tiny" / name).stat().st_size > 1000


@pytest.mark.slow  # the `finished` fixture runs the whole workflow (~1 min)
def test_report_numbers_match_summary(finished):
    summary = pd.read_csv(finished / "results/tiny/summary.csv")
    report = (finished / "reports/tiny/report.md").read_text()
    means = summary.groupby(["group", "label"])["test_r2"].mean()
    for (group, label), mean in means.items():
        section = report.split(f"`{group}`", 1)[1]
        row = next(line for line in section.splitlines() if line.startswith(f"| `{label}`"))
        assert fmt(float(mean)) in row, (group, label, fmt(float(mean)), row)


@pytest.mark.slow  # the `finished` fixture runs the whole workflow (~1 min)
def test_verdicts_csv_matches_the_report(finished):
    """The report's answers table is results/{study}/verdicts.csv, row for row."""
    import yaml

    table = pd.read_csv(finished / "results/tiny/verdicts.csv", keep_default_na=False)
    report = (finished / "reports/tiny/report.md").read_text()
    rows = re.findall(
        r"^\| `(\w+)` / `([^`]+)` \| [^|]* \| ([^|]*) \| \*\*([a-z ]+)\*\* \|", report, re.M
    )
    assert [(g, c, e.strip(), v) for g, c, e, v in rows] == [
        (r.group, r.contrast, r.expect or "–", r.verdict) for r in table.itertuples()
    ]
    assert list(table["contrast"]) == ["(group)", "(group)", "cosine_vs_none"]
    assert set(table["verdict"]) <= {
        "supported",
        "contradicted",
        "differs",
        "no relevant effect",
        "inconclusive",
        "identical by construction",
        "not testable",
    }
    rec = yaml.safe_load((finished / "results/tiny/recommended.yaml").read_text())
    assert rec["recommended"] is None or rec["recommended"]["experiment"] in report


@pytest.mark.slow  # the `finished` fixture runs the whole workflow (~1 min)
def test_report_figures_are_linked_pngs(finished):
    report_dir = finished / "reports/tiny"
    report = (report_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert links
    for link in links:
        png = (report_dir / link).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


@pytest.mark.slow  # the `finished` fixture runs the whole workflow (~1 min)
def test_whole_study_views_from_the_real_attempt_records(finished):
    """Every attempt training recorded reaches timeline.csv and compute.csv, and the report
    has the whole-study figures and the compute table."""
    results = finished / "results/tiny"
    timeline = pd.read_csv(results / "timeline.csv")
    assert len(timeline) == 6  # 3 configurations x 2 seeds, one attempt each
    assert (timeline["outcome"] == "finished").all() and (timeline["device"] == "cpu").all()
    assert timeline["host"].notna().all() and (timeline["threads"] >= 1).all()
    assert (timeline["end"] > timeline["start"]).all()
    assert timeline["queue_wait_s"].isna().all()  # a local run has no queue: not known
    compute = pd.read_csv(results / "compute.csv").set_index("scope")
    assert compute.loc["study", "runs"] == 6 and compute.loc["study", "gpu_h"] == 0
    assert compute.loc["study", "cpu_h"] == pytest.approx(
        (timeline["wall_s"] * timeline["threads"]).sum() / 3600
    )
    # bs8 = scheduler-none: trained once, counted once for the study and in both groups
    assert compute.loc["batch_size", "runs"] == compute.loc["scheduler", "runs"] == 4
    report_dir = finished / "reports/tiny"
    section = (report_dir / "report.md").read_text().split("## Whole study")[1]
    for name in ("parallel_coordinates", "variance_share", "timeline"):
        assert (
            f"](figures/{name}.png)" in section and (report_dir / f"figures/{name}.png").is_file()
        )
    assert "| **study** | 3 | 6 | 6 | 0 | 0 |" in section


@pytest.mark.slow  # the `finished` fixture runs the whole workflow (~1 min)
def test_editing_a_question_reruns_aggregate_and_report(finished):
    """The study file is a declared input: a changed question reaches the report, and no
    training job runs again."""
    study_file = finished / "studies/tiny.yaml"
    original = study_file.read_text()
    try:
        study_file.write_text(
            original.replace("Do smaller batches help?", "Do smaller batches help at all?")
        )
        counts = job_counts(run_snakemake(finished, "-n", "--cores", "1").stdout)
        assert counts.get("aggregate") == counts.get("report") == 1
        assert "train" not in counts and "extract" not in counts
    finally:
        study_file.write_text(original)


def test_real_microbead_folder_replaces_generated_data(tmp_path, microbead_dir):
    work = write_workdir(tmp_path, TINY, microbead_dir=str(microbead_dir))
    out = run_snakemake(work, "-n", "--cores", "1").stdout
    counts = job_counts(out)
    assert "generate_microbeads" not in counts
    assert counts["prepare"] == 1 and counts["train"] == 3  # 4 experiments, 3 configurations
