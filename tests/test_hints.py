"""What a new user sees first: the nearest valid key or study for a misspelt one, the study
command's usage and table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, run_snakemake, write_workdir

from hpstudy.config import ConfigError, TrainConfig
from hpstudy.study import load_study
from hpstudy.studyfile import StudyError

STUDY = """
name: s1
seeds: 2
dataset: {name: microbeads, image_size: 32}
base: {epochs: 2}
groups:
  bs:
    baseline: bs16
    grid: {batch_size: [16, 32]}
  sched:
    list:
      - {scheduler: cosine}
      - {scheduler: step, gamma: 0.5}
"""


def study_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hpstudy", "check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_config_key_suggests_the_nearest():
    with pytest.raises(
        ConfigError,
        match=r"unknown key\(s\) \['batchsize'\]; did you mean "
        r"`batch_size`\?",
    ):
        TrainConfig.from_dict({"batchsize": 16})
    with pytest.raises(
        ConfigError,
        match=r"did you mean `batch_size` for `batchsize`, "
        r"`weight_decay` for `weightdecay`\?",
    ):
        TrainConfig.from_dict({"batchsize": 16, "weightdecay": 0.1, "zzz": 1})


def test_far_off_key_gets_no_suggestion():
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"zzz": 1})
    assert "did you mean" not in str(err.value)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "base: {epochs: 2}",
            "base: {epochs: 2, batchsize: 8}",
            "base: unknown key(s) ['batchsize']; did you mean `batch_size`?",
        ),
        (
            "grid: {batch_size: [16, 32]}",
            "grid: {batch_sise: [16, 32]}",
            "groups.bs.grid: unknown key(s) ['batch_sise']; did you mean `batch_size`?",
        ),
        (
            "{scheduler: cosine}",
            "{sheduler: cosine}",
            "groups.sched.list[0]: unknown key(s) ['sheduler']; did you mean `scheduler`?",
        ),
        ("seeds: 2", "seed: 2", "unknown key(s) ['seed']; did you mean `seeds`?"),
        (
            "    baseline: bs16",
            "    basline: bs16",
            "groups.bs: unknown key(s) ['basline']; did you mean `baseline`?",
        ),
    ],
)
def test_study_key_suggests_the_nearest(tmp_path, old, new, expected):
    path = tmp_path / "s1.yaml"
    path.write_text(STUDY.replace(old, new))
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert expected in str(err.value)


def test_missing_study_lists_the_others_and_the_nearest(tmp_path):
    (tmp_path / "s1.yaml").write_text(STUDY)
    (tmp_path / "tiny.yaml").write_text(STUDY)
    with pytest.raises(
        StudyError,
        match=r"tiny2.yaml: no such study file; studies in .*: "
        r"s1, tiny; did you mean `tiny`\?",
    ):
        load_study(tmp_path / "tiny2.yaml")


def test_study_help_prints_usage():
    proc = study_cli("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: hpstudy check")
    assert "STUDY.yaml" in proc.stdout and "--device-profile" in proc.stdout
    assert "quick" in proc.stdout  # the shipped studies


def test_study_cli_names_the_shipped_studies_for_a_missing_one():
    proc = study_cli("config/studies/quik.yaml")
    assert proc.returncode == 2
    assert "shipped studies: bottleneck, bottleneck_quick" in proc.stderr
    assert "did you mean `quick`?" in proc.stderr


def test_study_cli_prints_groups_by_experiments_by_seeds(tmp_path):
    (tmp_path / "s1.yaml").write_text(STUDY)
    proc = study_cli(str(tmp_path / "s1.yaml"), "--no-cost")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(
        "ok: 2 groups, 4 experiments, 2 seeds, 8 runs (seeds 0, 1); "
        "4 distinct configurations, 8 runs trained"
    )
    assert lines[1].split() == ["group", "experiments", "seeds", "runs", "factors", "labels"]
    assert lines[2].split()[:5] == ["bs", "2", "2", "4", "batch_size"]
    assert lines[2].endswith("bs16, bs32")
    assert lines[3].split()[:4] == ["sched", "2", "2", "4"]
    assert lines[4].split() == ["total", "4", "2", "8"]


def test_workflow_names_the_shipped_studies_for_a_missing_one(tmp_path):
    work = write_workdir(tmp_path, STUDY, "quik", studies_dir=str(REPO / "config" / "studies"))
    proc = run_snakemake(work, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "no such study file; shipped studies: bottleneck" in out
    assert "did you mean `quick`?" in out
