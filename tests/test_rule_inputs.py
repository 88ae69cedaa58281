"""What the workflow's rules get from hpstudy.rule_inputs, asked without Snakemake: data folders
checked with the fix named, the records aggregate reads, a sequential study's seeds per round
from the decisions before it, and walltimes. The real workflow asks the same questions through
workflow/rules/common.smk (test_studies.py, test_sequential_workflow.py dry-run it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from hpstudy import calibration, cost
from hpstudy.rule_inputs import InputError, RuleInputs, parse_flags

STUDY = """
name: tiny
seeds: 2
dataset: {name: microbeads, image_size: 32}
base: {epochs: 1, batch_size: 8}
groups:
  bs:
    baseline: bs8
    grid: {batch_size: [4, 8]}
  sched:
    baseline: none
    grid: {scheduler: [none, cosine]}
"""
SEQUENTIAL = STUDY.replace("seeds: 2", "seeds: {initial: 2, max: 4, step: 1}")


def config(tmp_path: Path, study_text: str = STUDY, **values) -> dict:
    """The workflow config as Snakemake hands it over (config/config.yaml's defaults)."""
    (tmp_path / "studies").mkdir(exist_ok=True)
    name = yaml.safe_load(study_text)["name"]
    (tmp_path / "studies" / f"{name}.yaml").write_text(study_text)
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return (
        base
        | {
            "study": name,
            "studies_dir": str(tmp_path / "studies"),
            "results_dir": f"{tmp_path}/results/",
            "reports_dir": f"{tmp_path}/reports",
            "vgg_cells_dir": None,
        }
        | values
    )


def test_flags_from_the_command_line_become_booleans():
    values = {"allow_partial": "True", "tensorboard": "false", "study": "true"}
    parse_flags(values)
    assert values == {"allow_partial": True, "tensorboard": False, "study": "true"}


def test_data_folders_are_checked_and_the_fix_named(tmp_path):
    inputs = RuleInputs(config(tmp_path), estimate=False)
    spec = inputs.study("tiny").dataset
    generated = inputs.dataset_location(spec)  # no folder given: the generated set
    assert generated == f"{tmp_path}/results/datasets/microbeads-synthetic-n1948-px256-seed0"
    assert inputs.raw_dataset(inputs.dataset_key(spec)) == [generated]
    assert inputs.prepared("tiny").startswith(f"{tmp_path}/results/prepared/microbeads-")
    assert inputs.manifest("tiny") == inputs.prepared("tiny").replace(
        "prepared.pt", "manifest.json"
    )
    missing = RuleInputs(config(tmp_path, microbead_dir=str(tmp_path / "nope")))
    with pytest.raises(InputError, match=r"microbead_dir=.*nope does not exist; point --config"):
        missing.prepared("tiny")
    cifar = RuleInputs(config(tmp_path), estimate=False)
    with pytest.raises(InputError, match=r"dataset cifar10 needs --config data_root=PATH"):
        cifar.dataset_location({"name": "cifar10"})


def test_records_and_runs_of_a_fixed_study(tmp_path):
    inputs = RuleInputs(config(tmp_path), estimate=False)
    study = inputs.study("tiny")
    configs = list(study.configs())
    assert len(configs) == 3  # bs8 and sched-none are one configuration
    assert inputs.records("tiny") == [f"{tmp_path}/results/tiny/records/{c}.json" for c in configs]
    assert inputs.all_runs("tiny") == [f"{e.id}/seed{s}" for e in study.experiments for s in (0, 1)]
    # allow_partial: only the configurations whose train job finished
    partial = RuleInputs(config(tmp_path, allow_partial=True), estimate=False)
    (tmp_path / "results" / "tiny" / "runs" / configs[1]).mkdir(parents=True)
    assert partial.records("tiny") == [f"{tmp_path}/results/tiny/records/{configs[1]}.json"]
    cfg = inputs.train_config("tiny", configs[0])
    assert cfg["batch_size"] == 4 and "seed" not in cfg
    with pytest.raises(ValueError, match="experiments.tsv"):
        inputs.train_config("tiny", "0123456789")
    assert inputs.final_outputs()[1:] == [
        f"{tmp_path}/reports/tiny/report.md",
        f"{tmp_path}/reports/tiny/report.html",
    ]


def test_a_sequential_study_trains_what_each_decision_leaves_open(tmp_path):
    """Round 1 trains every configuration with `initial` seeds; a later round only those
    a decision gave more seeds; aggregate reads each configuration's last record."""
    asked = []
    inputs = RuleInputs(config(tmp_path, SEQUENTIAL), decision=None, estimate=False)
    study = inputs.study("tiny")
    ids = {cfg: [e.id for e in exps] for cfg, exps in study.configs().items()}
    open_cfg, decided = list(ids)[0], list(ids)[1:]
    decisions = {
        1: {"done": False, "seeds": {e: 2 for es in ids.values() for e in es}}
        | {"seeds_next": {e: 3 if cfg == open_cfg else 2 for cfg, es in ids.items() for e in es}},
        2: {"done": True, "seeds": {}, "seeds_next": {}},
    }

    def decision(name, k):
        asked.append((name, k))
        return decisions[k]

    inputs.decision = decision
    assert inputs.round_config_seeds("tiny", 1) == dict.fromkeys(ids, 2)
    assert inputs.round_config_seeds("tiny", 2) == {open_cfg: 3}
    assert inputs.round_seeds("tiny", 2, open_cfg) == [0, 1, 2]
    assert inputs.final_round("tiny") == 2
    assert inputs.last_trained("tiny", 2) == {open_cfg: 2} | dict.fromkeys(decided, 1)
    assert inputs.previous_round("tiny", 2) == [f"{tmp_path}/results/tiny/rounds/round1.yaml"]
    assert inputs.rounds_file("tiny") == [f"{tmp_path}/results/tiny/rounds/round2.yaml"]
    records = inputs.records("tiny")
    assert f"{tmp_path}/results/tiny/rounds/2/records/{open_cfg}.json" in records
    assert f"{tmp_path}/results/tiny/rounds/1/records/{decided[0]}.json" in records
    runs = inputs.all_runs("tiny")
    assert len(runs) == 3 * len(ids[open_cfg]) + 2 * sum(len(ids[c]) for c in decided)
    assert ("tiny", 1) in asked


def test_walltimes_and_the_start_lines(tmp_path, monkeypatch):
    """A train job's walltime is its seeds' estimate x factor x attempt (120 min per seed x
    attempt without one); the start lines give each study's cost and warn when a runtime
    override would give a retry after a walltime kill no more time."""
    monkeypatch.setenv("HPSTUDY_CACHE_DIR", str(tmp_path / "cache"))
    inputs = RuleInputs(config(tmp_path), estimate=True)
    study = inputs.study("tiny")
    here = inputs.calibration(1)  # a calibration with known step times: nothing measured
    for exp in study.experiments:
        shape = cost.run_shape(exp.config, study.dataset)
        here.entries[shape.key()] = {"seconds_per_step": 0.5, "flops_per_sample": 1e8}
    here.entries[calibration.STARTUP_KEY] = {"seconds": 5.0}
    cfg = next(iter(study.configs()))
    run = inputs.run_estimate("tiny", cfg)
    assert run.wall_s > run.train_s > 0
    expected = cost.walltime_minutes(run.wall_s, 2, 3, inputs.walltime)
    assert inputs.runtime_minutes("tiny", cfg, seeds=2, attempt=3) == expected
    lines = inputs.start_lines("60")
    assert lines[0].startswith("hpstudy: tiny: 6 runs, ") and len(lines) == 2
    assert "--set-resources train:runtime=60 replaces the walltime" in lines[1]
    assert inputs.start_lines("60*attempt") == lines[:1]
    inputs.estimate = False
    assert inputs.runtime_minutes("tiny", cfg, seeds=2, attempt=3) == 120 * 2 * 3
