"""What the study loader says before any job (issue 21), beside the refusals of
test_bad_inputs.py: warnings for what runs but deserves a word, YAML read as people write it,
the experiment count said and capped before anything is expanded, and the `--config seeds=`
override's message. Everything runs in-process through `hpstudy check` or `load_study`."""

from __future__ import annotations

import pytest
import yaml
from test_bad_inputs import VALID_STUDY, _cube, _set, _write_study

from hpstudy import expand, study
from hpstudy.cli import main
from hpstudy.data_checks import GENERATED, Source
from hpstudy.study import load_study
from hpstudy.studyfile import StudyError, load_yaml, parse_seeds_override


def _check(tmp_path, capsys, mutation, *args: str) -> tuple[int, list[str], str]:
    """`hpstudy check` of the valid study with `mutation`: (status, warning lines, stdout)."""
    path = _write_study(tmp_path / "studies", mutation)
    status = main(["check", str(path), "--no-cost", *args])
    out = capsys.readouterr()
    warnings = [line for line in out.err.splitlines() if line.startswith("hpstudy: warning:")]
    assert "Traceback" not in out.err
    return status, warnings, out.out


# (case id, mutation, substrings of the one warning it must give)
WARNING_CASES = [
    (
        "one_seed",
        lambda s: None,  # the catalogue's study runs one seed (a smoke test)
        ["seeds: 1", "no question of this study can be tested", "use seeds: 3"],
    ),
    (
        "rescaled_fractions",
        _set("dataset.split", {"train": 0.33, "val": 0.33, "test": 0.33}),
        ["dataset.split", "= 0.99, not 1", "rescaled to {train: 0.333, val: 0.333, test: 0.333}"],
    ),
    (
        "train_subset_beyond_split",  # refused in a job: test_faults shows a study go on past it
        _set("base.train_subset", 5000),
        ["base.train_subset", "train_subset=5000 exceeds the 1169 training images", "will fail"],
    ),
    (
        "one_optimizer_step",
        _set("base.batch_size", 2048),
        [
            "groups: fewer than 2 optimizer steps per epoch",
            "1169-image training split",
            "g-lr1e-3 (1)",
        ],
    ),
]


@pytest.mark.parametrize(
    "case_id, mutation, expected", WARNING_CASES, ids=[c[0] for c in WARNING_CASES]
)
def test_warning_before_any_job(tmp_path, capsys, case_id, mutation, expected):
    def with_two_seeds(s):
        s["seeds"] = 1 if case_id == "one_seed" else 2
        mutation(s)

    status, warnings, out = _check(tmp_path, capsys, with_two_seeds)
    assert status == 0 and ": ok: " in out
    assert len(warnings) == 1, warnings
    for text in expected:
        assert text in warnings[0], f"{text!r} not in {warnings[0]}"


def test_tiny_splits_are_said_with_their_image_counts(tmp_path, capsys):
    """data_percentage 0.5 of the 1948 generated images: 10 images, 7/2/1 (the issue's
    1-image test set), and one step per epoch at batch 32."""

    def tiny(s):
        s.update(seeds=2, base={"epochs": 1, "batch_size": 32})
        s["dataset"] = {"name": "microbeads", "image_size": 64, "data_percentage": 0.5}

    status, warnings, _ = _check(tmp_path, capsys, tiny)
    assert status == 0
    val, test, steps = warnings
    assert "dataset.data_percentage: the val split has 2 image(s)" in val
    assert "the test split has 1 image(s) (1948 microbead images x data_percentage 0.5%" in test
    assert "-> 7/2/1 train/val/test): its metrics are noise" in test
    assert "give it at least 10" in test
    assert "fewer than 2 optimizer steps per epoch on the 7-image training split" in steps


def test_a_folder_of_images_is_checked_with_its_own_count(tmp_path, capsys):
    """--n-images: the split is the folder's; 20 images leave a 4-image test split."""
    status, warnings, _ = _check(tmp_path, capsys, _set("seeds", 2), "--n-images", "20")
    assert status == 0
    assert any("the test split has 4 image(s) (20 microbead images" in w for w in warnings)


def test_no_word_for_a_sound_study(tmp_path, capsys, repo):
    for name in ("quick", "bottleneck", "cifar10_resnet18", "vgg_cells"):
        status = main(["check", str(repo / f"config/studies/{name}.yaml"), "--no-cost"])
        err = capsys.readouterr().err
        assert status == 0 and "warning" not in err, err


def test_jobs_rereading_a_study_skip_the_data_checks(tmp_path):
    """A job (aggregate, decide_round) reloads a study the workflow checked against its real
    data; without a `source` it is not checked again against the generated set's sizes."""
    path = _write_study(tmp_path, _set("base.batch_size", 4))  # a last batch of 1 of 1169
    with pytest.raises(StudyError, match="holds one image"):
        load_study(path, source=GENERATED)
    assert load_study(path, source=Source(12, 16, 1)).experiments  # 7 training images
    assert load_study(path).experiments


# -- YAML as people write it ----------------------------------------------------------------
def test_numbers_and_names_as_written(tmp_path):
    text = yaml.safe_dump(VALID_STUDY, sort_keys=False).replace(
        "      - 0.001\n", "      - 1e-3\n      - 2E-4\n      - .5e-2\n"
    )
    text = text.replace("  batch_size: 5\n", "  batch_size: 5\n  weight_decay: 1e-4\n")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    s = load_study(path)
    assert [e.config.lr for e in s.experiments] == [1e-3, 2e-4, 0.005]
    assert s.experiments[0].config.weight_decay == 1e-4
    # YAML 1.2 core schema: only true/false are booleans, 012 is twelve, no dates
    path.write_text("a: [off, on, yes, no, true, False, 012, 0x1F, 0o17, 2024-01-02, ~, .inf]\n")
    assert load_yaml(path) == {
        "a": ["off", "on", "yes", "no", True, False, 12, 31, 15, "2024-01-02", None, float("inf")]
    }


def test_a_repeated_key_is_named_at_any_depth(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("groups:\n  g:\n    list:\n      - {lr: 1.0e-3, lr: 2.0e-3}\n")
    with pytest.raises(StudyError) as err:
        load_yaml(path)
    assert f"{path}: groups.g.list[0].lr: the key 'lr' appears twice (lines 4 and 4)" in str(
        err.value
    )


# -- size before expansion ------------------------------------------------------------------
def test_a_large_grid_is_counted_and_refused_before_expanding(tmp_path, monkeypatch):
    """64,000 experiments: refused from the grid sizes; nothing is expanded."""

    def no_expansion(*args):
        raise AssertionError("expanded")

    monkeypatch.setattr(study, "expand_groups", no_expansion)
    path = _write_study(tmp_path, _cube(40))
    with pytest.raises(StudyError, match=r"64,000 experiments .* max_experiments=20,000"):
        load_study(path)


def test_the_count_is_said_before_expanding_and_the_table_stays_short(tmp_path, monkeypatch):
    heard = []
    real_expand = study.expand_groups

    def expand_groups(*args):
        heard.append("expanding")
        return real_expand(*args)

    monkeypatch.setattr(study, "expand_groups", expand_groups)
    s = load_study(_write_study(tmp_path, _cube(11)), log=heard.append)  # 1,331 experiments
    assert (
        heard[0].startswith("hpstudy: ") and "expanding 1,331 experiments (g: lr 11 x" in heard[0]
    )
    assert heard[1] == "expanding"
    row = study.study_rows(s)[0]
    shown, more = row["labels"].split(", ... ")
    assert len(shown.split(", ")) == 20 and more == "(1,311 more)"


def test_groups_written_as_a_list_get_the_shape_to_write_and_a_short_message(tmp_path):
    """`- name: g` items (the list shape of other tools) under `groups:`: the message shows
    the mapping to write, and quotes the 1,200-value list cut short, not whole."""

    def as_list(s):
        s["groups"] = [{"name": "g", "grid": {"lr": [1e-5 * (i + 1) for i in range(1200)]}}]

    with pytest.raises(StudyError) as err:
        load_study(_write_study(tmp_path, as_list))
    message = str(err.value)
    assert "groups: [{'name': 'g', 'grid': {'lr': [1e-05, " in message
    assert "characters, 1 item) is not allowed; expected a mapping" in message
    assert "write each item as `g:` with its keys indented below it" in message
    assert len(message) < 600


def test_max_experiments_raises_the_cap(tmp_path):
    counts = expand.count_experiments(
        {"a": {"grid": {"lr": [1, 2, 3], "batch_size": [4, 5]}}, "b": {"list": [{}, {}]}}
    )
    assert counts == {"a": 6, "b": 2}
    path = _write_study(tmp_path, lambda s: (_cube(4)(s), s.update(max_experiments=63)))
    with pytest.raises(StudyError, match="64 experiments .* more than max_experiments=63"):
        load_study(path)


# -- the seeds override -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("abc", ["seeds: 'abc' is not allowed", "a mapping with keys initial, max"]),
        ("1.5", ["seeds: 1.5 is not allowed", "a list of integers >= 0"]),
        ("{initial: 3}", ["seeds: 'max' is a required property"]),
    ],
)
def test_seeds_override_says_what_to_write(tmp_path, value, expected):
    path = _write_study(tmp_path, lambda s: None)
    with pytest.raises(StudyError) as err:
        load_study(path, parse_seeds_override(value))
    message = str(err.value)
    for text in [*expected, "write it as --config seeds=5 (fixed)", "seeds='[0, 1, 2]'"]:
        assert text in message, message
    assert "or a value" not in message


def test_seeds_override_reads_yaml_as_the_study_file_does():
    assert parse_seeds_override("{initial: 3, max: 10, futility: false}") == {
        "initial": 3,
        "max": 10,
        "futility": False,
    }
    assert parse_seeds_override("[0, 1, 2]") == [0, 1, 2]
