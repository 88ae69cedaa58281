"""The workflow side of sequential seeds (issue 11), without running the workflow: the
`--config seeds=...` override as Snakemake hands it over, intervals named by the level of
their look, the runs planned so far (hpstudy.rounds: start line and status), what the
report reads about the rounds, and the cluster profiles' requests for round train jobs."""

from __future__ import annotations

import math

import pytest
import yaml
from test_cost import fake_calibration

from hpstudy import analysis, cost, rounds
from hpstudy.study import load_study
from hpstudy.studyfile import StudyError, parse_seeds_override


@pytest.mark.parametrize(
    "given, parsed",
    [
        # what Snakemake's --config parser (YAML BaseLoader: every scalar a string) gives
        ({"initial": "3", "max": "10", "step": "2"}, {"initial": 3, "max": 10, "step": 2}),
        (
            {"initial": "3", "max": "7", "futility": "true"},
            {"initial": 3, "max": 7, "futility": True},
        ),
        (
            "{initial: 3, max: 10, spending: pocock}",
            {"initial": 3, "max": 10, "spending": "pocock"},
        ),
        (5, 5),
        (["0", "1", "4"], [0, 1, 4]),
        (None, None),
    ],
)
def test_seeds_override_reads_as_the_study_file_would(given, parsed):
    assert parse_seeds_override(given) == parsed


def test_seeds_override_makes_a_shipped_study_sequential(repo):
    plain = load_study(repo / "config/studies/bottleneck.yaml")
    study = load_study(repo / "config/studies/bottleneck.yaml", {"initial": 3, "max": 10})
    assert plain.plan is None and study.plan.looks == [3, 5, 7, 9, 10]
    assert study.seeds == list(range(10)) and study.configs().keys() == plain.configs().keys()
    assert load_study(repo / "config/studies/bottleneck.yaml", 5).seeds == list(range(5))


@pytest.mark.parametrize(
    "given, message",
    [
        ("{initial: 3, max", "not valid YAML"),
        ({"initial": "3", "max": "2"}, "seeds.max: 2 is smaller than seeds.initial=3"),
        ({"initial": "3", "max": "10", "stp": "2"}, "unknown key(s) ['stp']; did you mean `step`"),
        ({"initial": "1", "max": "4"}, "seeds.initial: 1 is not allowed"),
        ({"initial": "3", "max": "9", "spending": "wald"}, "seeds.spending: 'wald'"),
    ],
)
def test_bad_seeds_override_names_the_key_and_the_fix(repo, given, message):
    with pytest.raises(StudyError) as err:
        load_study(repo / "config/studies/quick.yaml", parse_seeds_override(given))
    text = str(err.value)
    assert message in text and "--config seeds=" in text, text


def test_the_override_turns_futility_off_and_on(repo):
    on = load_study(repo / "config/studies/quick.yaml", {"initial": 3, "max": 5})
    off = load_study(
        repo / "config/studies/quick.yaml", {"initial": 3, "max": 5, "futility": False}
    )
    assert on.plan.futility and not off.plan.futility  # on by default (docs/report.md)


@pytest.mark.parametrize(
    "alpha, name",
    [
        (0.05, "95% CI"),
        (0.1, "90% CI"),
        (0.016, "98.4% CI"),
        (0.0016, "99.84% CI"),
        (5e-5, "99.995% CI"),
    ],
)
def test_interval_named_by_its_level(alpha, name):
    assert analysis.ci_name(alpha) == name


def test_evidence_at_a_look_level_states_that_level():
    row = {"estimate": 0.1, "ci_low": 0.02, "ci_high": 0.18, "p_adj": 0.01, "method": "paired"}
    assert "(95% CI 0.02" in analysis.evidence(row, "test_r2", "a − b")
    text = analysis.evidence(row, "test_r2", "a − b", alpha=0.016)
    assert "(98.4% CI 0.02" in text and "95%" not in text


def _decision(study, round_, seeds_next, done, questions=()):
    return {
        "round": round_,
        "looks": study.plan.looks,
        "levels": [0.001, 0.01, 0.045],
        "alpha": 0.05,
        "seeds_next": seeds_next,
        "done": done,
        "questions": list(questions),
    }


def test_progress_counts_the_runs_planned_so_far(tmp_path, repo):
    study = load_study(repo / "config/studies/quick.yaml", {"initial": 3, "max": 7, "step": 2})
    n = len(study.configs())
    start = rounds.progress(study, tmp_path)
    assert (start.round, start.runs, start.runs_at_max) == (1, 3 * n, 7 * n)
    assert start.text() == (
        f"round 1: {3 * n} runs planned so far, up to {7 * n} if every question needs max seeds"
    )
    # round 1 gave the two scheduler contrasts' experiments 2 more seeds
    more = {e.id: 5 for e in study.groups["scheduler"].experiments}
    folder = tmp_path / study.name / "rounds"
    folder.mkdir(parents=True)
    seeds = {e.id: 3 for e in study.experiments} | more
    (folder / "round1.yaml").write_text(yaml.safe_dump(_decision(study, 1, seeds, False)))
    now = rounds.progress(study, tmp_path)
    assert (now.round, now.runs) == (2, 3 * n + 2 * 3)
    line = cost.one_line(study, fake_calibration(tmp_path), 1948, 2, now)
    assert line.startswith(
        f"hpstudy: quick: round 2: {3 * n + 6} runs planned so far, up to {7 * n} if every"
    )
    (folder / "round2.yaml").write_text(yaml.safe_dump(_decision(study, 2, seeds, True)))
    assert rounds.progress(study, tmp_path).text() == (
        f"finished in round 2: {3 * n + 6} runs, {7 * n - 3 * n - 6} fewer than {7 * n} at "
        "max seeds"
    )
    # round files of another plan (the override changed) are not this plan's
    other = load_study(repo / "config/studies/quick.yaml", {"initial": 3, "max": 9, "step": 2})
    assert rounds.progress(other, tmp_path).round == 1
    assert rounds.progress(load_study(repo / "config/studies/quick.yaml"), tmp_path) is None


def test_report_inputs_count_runs_per_question_and_round(repo):
    study = load_study(repo / "config/studies/quick.yaml", {"initial": 3, "max": 7, "step": 2})
    sched = [e.id for e in study.groups["scheduler"].experiments]
    loading = [e.id for e in study.groups["data_loading"].experiments]
    row = {"group": "scheduler", "contrast": "cosine_vs_constant", "verdict": "supported"}
    questions = [
        {**row, "round": 2, "seeds": 5, "level": 0.01, "status": "decided",
         "experiments": sched[:2], "row": row},
        {"group": "data_loading", "contrast": "(group)", "verdict": "inconclusive",
         "round": 3, "seeds": 7, "level": 0.045, "status": "at max", "experiments": loading,
         "why": "inconclusive with 7 seeds, the most the plan allows",
         "row": {"group": "data_loading", "contrast": "(group)", "verdict": "inconclusive"}},
    ]  # fmt: skip
    seeds = {e.id: 3 for e in study.experiments} | {e: 5 for e in sched} | {e: 7 for e in loading}
    decision = _decision(study, 3, seeds, True, questions)
    table = rounds.verdict_table(decision, study).set_index("contrast")
    assert table.loc["cosine_vs_constant", ["runs", "runs_at_max", "stopped"]].tolist() == [
        10, 14, "decided"
    ]  # fmt: skip
    assert "supported at look 2 with 5 seeds" in table.loc["cosine_vs_constant", "why_stopped"]
    assert table.loc["(group)", ["runs", "runs_at_max", "stopped"]].tolist() == [14, 14, "at max"]
    part = rounds.study_part(decision, study)
    n = part["configs"]
    assert n == len(study.configs())
    # 3 seeds of every configuration, then 2 more of scheduler's 3 and data_loading's 2,
    # then 2 more of data_loading's
    assert [r["runs"] for r in part["rounds"]] == [3 * n, 2 * 5, 2 * 2]
    assert part["runs"] == 3 * n + 14 and part["runs_saved"] == 7 * n - part["runs"]
    assert math.isclose(part["levels"][-1], 0.045)


@pytest.mark.parametrize("profile", ["slurm", "pbs", "local"])
def test_cluster_profiles_ask_the_same_for_round_train_jobs(repo, profile):
    """A sequential study's train jobs are rule train_round: they need the GPU, threads and
    memory of rule train, or they would run on a default CPU slot."""
    config = yaml.safe_load((repo / f"profiles/{profile}/config.v8+.yaml").read_text())
    assert config["set-resources"]["train_round"] == config["set-resources"]["train"]
    threads = config.get("set-threads", {})
    assert threads.get("train_round") == threads.get("train")


def test_worked_example_names_the_interval_of_the_row_it_explains():
    row = {"group": "lr", "contrast": "high_vs_low", "expect": "a_better", "verdict": "supported"}
    row |= {"estimate": 0.1, "ci_low": 0.02, "ci_high": 0.18, "p_adj": 0.01, "tost_p": math.nan}
    assert "(95% CI 0.02" in analysis.worked_example([row])
    assert "(98.4% CI 0.02" in analysis.worked_example([{**row, "level": 0.016}])
