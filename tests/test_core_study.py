import pytest

from hpstudy.expand import make_label
from hpstudy.study import load_study
from hpstudy.studyfile import StudyError

STUDY = """
name: s1
seeds: 3
dataset: {name: microbeads, image_size: 32}
base: {epochs: 2, lr: 3.0e-4}
groups:
  batch:
    baseline: bs32
    grid: {batch_size: [16, 32]}
  combo:
    list:
      - {batch_size: 32, lr: 1.0e-3}
      - {batch_size: 8, grad_accum_steps: 4}
    fixed: {scheduler: cosine}
"""


def write(tmp_path, text, name="s1"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_expansion_ids_and_resolved_configs(tmp_path):
    study = load_study(write(tmp_path, STUDY))
    assert [e.id for e in study.experiments] == [
        "batch-bs16",
        "batch-bs32",
        "combo-bs32_lr1e-3",
        "combo-bs8_acc4",
    ]
    assert study.seeds == [0, 1, 2]
    assert len(study.runs()) == 12
    combo = study.experiment("combo-bs8_acc4").config
    assert (combo.scheduler, combo.batch_size, combo.grad_accum_steps, combo.lr) == (
        "cosine",
        8,
        4,
        3e-4,
    )
    table = study.table()
    assert list(table["experiment"]) == [e.id for e in study.experiments]
    assert table["config_hash"].is_unique  # no two experiments of this study share a config
    assert (table["shared_with"] == "").all()


def test_experiments_of_several_groups_share_one_configuration(repo):
    study = load_study(repo / "config/studies/quick.yaml")
    configs = study.configs()
    assert len(configs) < len(study.experiments)
    shared = [exps for exps in configs.values() if len(exps) > 1]
    assert shared and all(len({e.group for e in exps}) == len(exps) for exps in shared)
    table = study.table().set_index("experiment")
    for exps in shared:
        for exp in exps:
            others = [e.id for e in exps if e.id != exp.id]
            assert table.loc[exp.id, "shared_with"].split(",") == others
            assert table.loc[exp.id, "config_hash"] == exp.config_id


def test_quick_study_shipped(repo):
    study = load_study(repo / "config/studies/quick.yaml")
    assert len(study.experiments) == 13
    assert len(study.seeds) >= 2
    # the quick study shows the verdict kinds a user meets (issue 10)
    assert study.sesoi and study.groups["batch_size"].expect["trend"] == "decreasing"
    assert study.groups["data_loading"].expect == {"none": True}
    assert all(study.groups[g].contrasts for g in ("lr_scaling", "grad_accumulation"))


@pytest.mark.parametrize(
    "overrides, label",
    [
        ({"batch_size": 16}, "bs16"),
        ({"lr": 1.2e-3, "batch_size": 128}, "lr1.2e-3_bs128"),
        ({"scheduler": "cosine"}, "cosine"),
        ({}, "base"),
        ({"mixed_precision": False}, "ampoff"),
    ],
)
def test_labels_are_readable(overrides, label):
    assert make_label(overrides) == label


@pytest.mark.parametrize(
    "edit, message",
    [
        (("lr: 3.0e-4}", "lr: -1}"), "base.lr: -1 is not allowed; expected a number > 0 and <= 10"),
        (("batch_size: [16, 32]", "batch_size: [16, 16]"), "duplicate experiment id 'batch-bs16'"),
        (("epochs: 2", "epoch: 2"), "base: unknown key(s) ['epoch']"),
        (("baseline: bs32", "baseline: bs64"), "groups.batch.baseline: 'bs64' is not one of"),
        (("name: s1", "name: other"), "must equal the file name 's1'"),
    ],
)
def test_bad_study_names_file_key_and_value(tmp_path, edit, message):
    path = write(tmp_path, STUDY.replace(*edit))
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_a_split_per_run_is_a_seed_of_its_own(tmp_path):
    """`dataset.split.seed: per_run` (issue 20, item 7) loads; an ordered split cannot be
    redrawn, and a misspelt value names what is allowed."""
    per_run = "dataset: {name: microbeads, image_size: 32, split: {seed: per_run}}"
    study = load_study(
        write(tmp_path, STUDY.replace("dataset: {name: microbeads, image_size: 32}", per_run))
    )
    assert study.dataset["split"]["seed"] == "per_run"
    ordered = per_run.replace("seed: per_run", "method: ordered, train: 10, seed: per_run")
    with pytest.raises(StudyError, match="per_run redraws the split .* method: ordered"):
        load_study(
            write(tmp_path, STUDY.replace("dataset: {name: microbeads, image_size: 32}", ordered))
        )
    wrong = per_run.replace("per_run", "per_seed")
    with pytest.raises(StudyError, match="dataset.split.seed"):
        load_study(
            write(tmp_path, STUDY.replace("dataset: {name: microbeads, image_size: 32}", wrong))
        )
