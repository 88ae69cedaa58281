"""The catalogue of malformed inputs (issue 7): each is generated here, fed to the real entry
point (study checker, prepare script, training script, `snakemake -n`), and must fail with a
non-zero exit status, a message naming the file, the key or row, the value and the fix, and
no output left behind."""

from __future__ import annotations

import copy
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_snakemake
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

VALID_STUDY = {
    "name": "s",
    "seeds": 1,
    "dataset": {
        "name": "microbeads",
        "image_size": 16,
        "split": {"method": "random", "train": 0.6, "val": 0.2, "test": 0.2},
    },
    # batch 5: never a last batch of one image (7 training images in the workflow tests,
    # 1169 of the 1948 generated ones `hpstudy check` assumes); see one_image_last_batch
    "base": {"epochs": 1, "batch_size": 5},
    "groups": {"g": {"grid": {"lr": [1.0e-3]}}},
}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- study files ---------------------------------------------------------------------------
def _set(path: str, value):
    """A mutation setting a dotted key path (`base.lr`) of the valid study."""

    def mutate(study):
        *parents, last = path.split(".")
        node = study
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _group(spec):
    return _set("groups.g", spec)


def _drop(key):
    return lambda study: study.pop(key)


class _Text:
    """A mutation of the valid study's YAML text (what a dict cannot hold: a repeated key,
    a tab, `1e-3` as typed): (old, new) replacements, applied once each."""

    def __init__(self, *edits: tuple[str, str]):
        self.edits = edits

    def apply(self, text: str) -> str:
        for old, new in self.edits:
            assert old in text, old
            text = text.replace(old, new, 1)
        return text


def _both(*mutations):
    def mutate(study):
        for mutation in mutations:
            mutation(study)

    return mutate


# A grid of n x n x n experiments (lr x weight_decay x momentum).
def _cube(n: int, **extra):
    return _group(
        {
            "grid": {
                "lr": [round(1e-4 * (i + 1), 6) for i in range(n)],
                "weight_decay": [round(0.01 * i, 4) for i in range(n)],
                "momentum": [round(0.01 * i, 4) for i in range(n)],
            },
            **extra,
        }
    )


# (case id, mutation of the valid study or raw file text, substrings the message must hold)
STUDY_CASES = [
    ("unknown_top_key", _set("seed", 3), ["(top level)", "unknown key(s) ['seed']", "seeds"]),
    (
        "unknown_base_key",
        _set("base.learning_rate", 0.1),
        ["base", "unknown key(s) ['learning_rate']", "'lr'"],
    ),
    (
        "unknown_grid_key",
        _group({"grid": {"lrr": [1]}}),
        ["groups.g.grid", "unknown key(s) ['lrr']", "'lr'"],
    ),
    (
        "unknown_fixed_key",
        _group({"grid": {"lr": [1e-3]}, "fixed": {"bogus": 1}}),
        ["groups.g.fixed", "unknown key(s) ['bogus']"],
    ),
    (
        "batch_size_string",
        _set("base.batch_size", "32"),
        ["base.batch_size", "'32'", "expected an integer >= 1"],
    ),
    (
        "batch_size_float",
        _set("base.batch_size", 3.5),
        ["base.batch_size", "3.5", "expected an integer >= 1"],
    ),
    (
        "batch_size_zero",
        _group({"grid": {"batch_size": [8, 0]}}),
        ["groups.g.grid.batch_size", "0 is not allowed", "an integer >= 1"],
    ),
    ("lr_negative", _set("base.lr", -0.1), ["base.lr", "-0.1", "a number > 0 and <= 10"]),
    (
        "lr_too_large",
        _group({"grid": {"lr": [100.0]}}),
        ["groups.g.grid.lr", "100.0", "a number > 0 and <= 10"],
    ),
    ("lr_nan", ".nan", ["base", "lr=nan", "a number in (0, 10]"]),
    (
        "epochs_bool",
        _group({"grid": {"epochs": [True]}}),
        ["groups.g.grid.epochs", "True", "an integer >= 1"],
    ),
    (
        "list_value_out_of_range",
        _group({"list": [{"lr": 0.1}, {"lr": -1}]}),
        ["groups.g.list[1].lr", "-1", "a number > 0"],
    ),
    (
        "unknown_model",
        _set("base.model", "resnet9000"),
        ["base.model", "'resnet9000'", "resnet_shallow"],
    ),
    (
        "unknown_optimizer",
        _set("base.optimizer", "adamax"),
        ["base.optimizer", "'adamax'", "adamw"],
    ),
    (
        "unknown_scheduler",
        _group({"grid": {"scheduler": ["cosin"]}}),
        ["groups.g.grid.scheduler", "'cosin'", "cosine"],
    ),
    (
        "unknown_augmentation",
        _set("base.augment", ["flip"]),
        ["base.augment[0]", "'flip'", "hflip"],
    ),
    (
        "accumulation_not_dividing",
        _group({"grid": {"batch_size": [16, 24]}, "fixed": {"effective_batch_size": 64}}),
        [
            "groups.g.grid (experiment g-bs24)",
            "effective_batch_size=64",
            "batch_size=24",
            "a multiple of batch_size",
        ],
    ),
    (
        "accumulation_disagreeing",
        _group(
            {
                "list": [{"batch_size": 16, "grad_accum_steps": 2}],
                "fixed": {"effective_batch_size": 64},
            }
        ),
        ["groups.g.list[0]", "effective_batch_size=64", "16 x 2 = 32", "make them agree"],
    ),
    (
        "nesterov_without_momentum",
        _group({"list": [{"optimizer": "sgd", "momentum": 0.0, "nesterov": True}]}),
        ["groups.g.list[0]", "nesterov=True is not allowed; expected"],
    ),
    (
        "duplicate_experiment_id",
        _group({"list": [{"lr": 1e-3}, {"lr": 0.001}]}),
        ["groups.g", "duplicate experiment id 'g-lr1e-3'", "distinct values"],
    ),
    ("no_groups", _set("groups", {}), ["groups", "is empty", "at least one"]),
    ("empty_group", _group({}), ["groups.g", "exactly one of `grid`", "`list`"]),
    ("empty_grid", _group({"grid": {}}), ["groups.g.grid", "is empty"]),
    ("empty_grid_values", _group({"grid": {"lr": []}}), ["groups.g.grid.lr", "is empty"]),
    ("empty_list", _group({"list": []}), ["groups.g.list", "is empty"]),
    (
        "grid_and_list",
        _group({"grid": {"lr": [1e-3]}, "list": [{"lr": 1e-2}]}),
        ["groups.g", "exactly one of `grid`"],
    ),
    ("list_item_not_mapping", _group({"list": [3]}), ["groups.g.list[0]", "a mapping"]),
    (
        "unsafe_group_name",
        _set("groups", {"my group;rm": {"grid": {"lr": [1e-3]}}}),
        ["groups", "'my group;rm'", "a name matching ^[A-Za-z]"],
    ),
    ("unsafe_study_name", _set("name", "s;rm"), ["name", "'s;rm'", "^[A-Za-z0-9]"]),
    ("name_not_file_name", _set("name", "other"), ["name", "'other'", "file name 's'"]),
    ("seed_overridden", _group({"grid": {"seed": [1, 2]}}), ["groups.g", "use `seeds`"]),
    ("seeds_zero", _set("seeds", 0), ["seeds", "0 is not allowed", "an integer >= 1"]),
    ("seeds_repeated", _set("seeds", [1, 1]), ["seeds", "[1, 1]", "without repeats"]),
    (
        "unknown_dataset",
        _set("dataset.name", "imagenet"),
        ["dataset.name", "'imagenet'", "microbeads"],
    ),
    (
        "data_percentage_zero",
        _set("dataset.data_percentage", 0),
        ["dataset.data_percentage", "0 is not allowed", "> 0 and <= 100"],
    ),
    (
        "baseline_not_a_label",
        _group({"grid": {"lr": [1e-3]}, "baseline": "nope"}),
        ["groups.g.baseline", "'nope'", "['lr1e-3']"],
    ),
    ("sesoi_zero", _set("sesoi", 0), ["sesoi", "0 is not allowed", "a number > 0"]),
    ("sesoi_string", _set("sesoi", "1%"), ["sesoi", "'1%' is not allowed", "a number > 0"]),
    (
        "contrast_unknown_label",
        _group(
            {
                "list": [{"lr": 1e-3}, {"lr": 1e-2}],
                "contrasts": [{"name": "c", "a": "lr1e-3", "b": ["lr0.01", "nope"]}],
            }
        ),
        ["groups.g.contrasts[0].b", "'nope'", "choose from ['lr1e-3', 'lr0.01']"],
    ),
    (
        "contrast_label_on_both_sides",
        _group(
            {
                "grid": {"lr": [1e-3, 1e-2]},
                "contrasts": [{"name": "c", "a": "lr1e-3", "b": ["lr1e-3", "lr0.01"]}],
            }
        ),
        ["groups.g.contrasts[0]", "['lr1e-3']", "both sides", "disjoint"],
    ),
    (
        "contrast_bad_expect",
        _group(
            {
                "grid": {"lr": [1e-3, 1e-2]},
                "contrasts": [{"name": "c", "a": "lr1e-3", "b": "lr0.01", "expect": "better"}],
            }
        ),
        ["groups.g.contrasts[0].expect", "'better'", "a_better"],
    ),
    (
        "contrast_duplicate_name",
        _group(
            {
                "grid": {"lr": [1e-3, 1e-2]},
                "contrasts": [
                    {"name": "c", "a": "lr1e-3", "b": "lr0.01"},
                    {"name": "c", "a": "lr0.01", "b": "lr1e-3"},
                ],
            }
        ),
        ["groups.g.contrasts[1].name", "'c' is used twice"],
    ),
    (
        "trend_on_list_group",
        _group({"list": [{"lr": 1e-3}, {"lr": 1e-2}], "expect": {"trend": "increasing"}}),
        ["groups.g.expect.trend", "`list` group", "contrasts"],
    ),
    (
        "trend_on_non_numeric_factor",
        _group({"grid": {"scheduler": ["none", "cosine"]}, "expect": {"trend": "increasing"}}),
        ["groups.g.expect.trend", "'scheduler'", "non-numeric", "contrasts"],
    ),
    (
        "trend_on_two_factors",
        _group(
            {"grid": {"lr": [1e-3, 1e-2], "batch_size": [4, 8]}, "expect": {"trend": "decreasing"}}
        ),
        ["groups.g.expect.trend", "exactly one varying grid factor", "['lr', 'batch_size']"],
    ),
    (
        "trend_log2_of_zero",
        _group(
            {
                "grid": {"weight_decay": [0.0, 0.1]},
                "expect": {"trend": "decreasing", "scale": "log2"},
            }
        ),
        ["groups.g.expect.scale", "log2 needs positive values", "scale: linear"],
    ),
    (
        "trend_and_none",
        _group({"grid": {"lr": [1e-3, 1e-2]}, "expect": {"trend": "increasing", "none": True}}),
        ["groups.g.expect", "either `trend`", "`none: true`"],
    ),
    (
        "trend_misspelt",
        _group({"grid": {"lr": [1e-3, 1e-2]}, "expect": {"trend": "up"}}),
        ["groups.g.expect.trend", "'up'", "increasing"],
    ),
    # -- issue 21: accepted before, and wrong or wasteful ---------------------------------------
    (
        "duplicate_key",
        _Text(("  epochs: 1\n", "  epochs: 1\n  epochs: 30\n")),
        ["base.epochs", "the key 'epochs' appears twice (lines 12 and 13)", "keep one"],
    ),
    (
        "duplicate_group_name",
        _Text(("groups:\n  g:\n", "groups:\n  g:\n    grid: {lr: [0.002]}\n  g:\n")),
        ["groups.g", "two groups are named 'g' (lines 15 and 17)", "its own name"],
    ),
    (
        "batch_without_optimizer_steps",
        _set("base", {"epochs": 1, "batch_size": 4096, "drop_last": True}),
        [
            "base.batch_size",
            "batch_size=4096 with drop_last: true leaves 0 optimizer steps per epoch",
            "1169-image training split (1948 microbead images)",
            "allowed: batch_size <= 1169, or drop_last: false",
        ],
    ),
    (
        "one_image_last_batch",
        _set("base.batch_size", 4),
        [
            "base.batch_size",
            "the last batch of each epoch holds one image (1169 training images = 292 x 4 + 1",
            "resnet_shallow's BatchNorm cannot train on a single 16x16 image",
            "drop_last: true",
        ],
    ),
    (
        "metric_of_another_task",
        _set("metric", "accuracy"),
        ["metric", "'accuracy' is not a metric of dataset 'microbeads' (regression)", "'r2'"],
    ),
    (
        "norm_mean_per_channel",
        _both(_set("base.norm_mean", [0.5, 0.5, 0.5]), _set("base.norm_std", [0.2, 0.2, 0.2])),
        ["base.norm_mean", "[0.5, 0.5, 0.5] has 3 value(s)", "1 channel(s)", "one per channel"],
    ),
    (
        "predefined_split_without_one",
        _set("dataset.split.method", "predefined"),
        ["dataset.split.method", "'predefined' is not allowed", "microbeads", "'random'"],
    ),
    (
        "model_needs_larger_images",
        _both(_set("dataset.image_size", 9), _set("base.model", "lenet")),
        ["base.model", "'lenet' needs images of at least 16x16", "9x9", "image_size >= 16"],
    ),
    (
        "split_fractions_sum",
        _set("dataset.split", {"method": "random", "train": 0.8, "val": 0.25, "test": 0.2}),
        [
            "dataset.split",
            "train 0.8 + val 0.25 + test 0.2 = 1.25",
            "must add up to 1",
            "{train: 0.64, val: 0.2, test: 0.16}",
        ],
    ),
    (
        "split_fraction_default_counts",
        _set("dataset.split", {"train": 0.8, "test": 0.2}),
        ["dataset.split", "val 0.15 (default)", "= 1.15"],
    ),
    (
        "ordered_counts_beyond_the_data",
        _set("dataset.split", {"method": "ordered", "train": 1500, "val": 200, "test": 300}),
        ["dataset.split", "= 2000 need more images than the 1948 there are", "at most 1948"],
    ),
    (
        "grid_over_the_cap",
        _cube(40),
        [
            "groups: 64,000 experiments (g: lr 40 x weight_decay 40 x momentum 40 = 64,000)",
            "max_experiments=20,000",
            "`max_experiments: 64000`",
        ],
    ),
    (
        "baseline_among_27000_labels",
        _both(_cube(30, baseline="lr1e-4_wd0_mom0.5"), _set("max_experiments", 30_000)),
        ["groups.g.baseline", "(20 of 27,000 shown, the closest first)", "'lr1e-4_wd0_mom0.05'"],
    ),
    (
        "no_effect_without_sesoi",
        _group({"grid": {"lr": [1e-3, 2e-3]}, "expect": {"none": True}}),
        ["groups.g.expect.none", "no `sesoi`", "can never be answered", "sesoi: 0.01"],
    ),
    (
        "equal_contrast_without_sesoi",
        _group(
            {
                "grid": {"lr": [1e-3, 2e-3]},
                "contrasts": [{"name": "c", "a": "lr1e-3", "b": "lr2e-3", "expect": "equal"}],
            }
        ),
        ["groups.g.contrasts[0].expect", "no `sesoi`"],
    ),
    # -- issue 21: refused before, with a message that did not help ---------------------------
    (
        "scheduler_off",
        _Text(("  batch_size: 5\n", "  batch_size: 5\n  scheduler: off\n")),
        ["base.scheduler", "'off' is not allowed", "'cosine'", "did you mean `none`?"],
    ),
    (
        "boolean_written_on",
        _Text(("  batch_size: 5\n", "  batch_size: 5\n  drop_last: on\n")),
        ["base.drop_last", "'on' is not allowed", "true or false", "write true"],
    ),
    (
        "factor_not_in_group",
        _group(
            {
                "grid": {"lr": [1e-3, 2e-3]},
                "factor": "batch_size",
                "expect": {"trend": "increasing"},
            }
        ),
        ["groups.g.factor", "'batch_size' is not a setting this group varies", "['lr']"],
    ),
    (
        "factor_constant",
        _group(
            {
                "list": [{"lr": 1e-3, "batch_size": 8}, {"lr": 2e-3, "batch_size": 8}],
                "factor": "batch_size",
            }
        ),
        ["groups.g.factor", "'batch_size' does not vary", "batch_size=8", "['lr']"],
    ),
    (
        "optimizer_case",
        _set("base.optimizer", "adamW"),
        ["base.optimizer", "'adamW' is not allowed", "did you mean `adamw`?"],
    ),
    (
        "scheduler_misspelt",
        _group({"grid": {"scheduler": ["none", "cosin"]}}),
        ["groups.g.grid.scheduler", "'cosin'", "did you mean `cosine`?"],
    ),
    (
        "model_misspelt",
        _group({"list": [{"model": "resnet_shalow"}]}),
        ["groups.g.list[0].model", "'resnet_shalow'", "did you mean `resnet_shallow`?"],
    ),
    ("missing_base", _drop("base"), ["(top level)", "'base' is a required property"]),
    ("yaml_syntax", "name: s\ngroups: [\n", ["not valid YAML", "line 3"]),
    ("yaml_tab", "name: s\n\tseeds: 1\n", ["not valid YAML", "line 2", "indent with spaces"]),
    ("empty_file", "", ["must be a mapping"]),
    (
        "python_tag_not_executed",
        "!!python/object/apply:os.system ['touch {tmp}/pwned']\n",
        ["not valid YAML", "python/object/apply"],
    ),
]


def _write_study(folder: Path, case) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.yaml"
    if isinstance(case, _Text):
        path.write_text(case.apply(yaml.safe_dump(VALID_STUDY, sort_keys=False)))
    elif isinstance(case, str):
        if case == ".nan":  # YAML's NaN cannot come from safe_dump of a dict literal
            text = yaml.safe_dump(VALID_STUDY)
            text = text.replace("  batch_size: 5\n", "  batch_size: 5\n  lr: .nan\n", 1)
            path.write_text(text)
        else:
            path.write_text(case.format(tmp=folder))
    else:
        study = copy.deepcopy(VALID_STUDY)
        case(study)
        path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "case_id, mutation, expected", STUDY_CASES, ids=[c[0] for c in STUDY_CASES]
)
def test_bad_study_is_rejected(tmp_path, capsys, case_id, mutation, expected):
    """Through the command's `main` in-process (the subprocess test below shows that its
    return value is the exit status): saves a Python start per case."""
    from hpstudy.cli import main

    path = _write_study(tmp_path / "studies", mutation)
    before = files_under(tmp_path)
    status = main(["check", str(path), "--no-cost"])
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    assert "Traceback" not in stderr
    # (a large study's experiment count may come first: said before expanding it)
    assert f"\nhpstudy: invalid study: {path}" in "\n" + stderr, stderr
    for text in expected:
        assert text in stderr, f"{text!r} not in: {stderr}"
    assert files_under(tmp_path) == before  # nothing written (and no payload executed)


def test_study_checker_exit_status(tmp_path):
    """`hpstudy check` exits 0 for the catalogue's base study (so every case above
    fails for its own defect) and 2 for a bad one."""
    good = _write_study(tmp_path / "good", lambda study: None)
    bad = _write_study(tmp_path / "bad", _set("base.lr", -1))
    proc = subprocess.run(
        [PYTHON, "-m", "hpstudy", "check", str(good)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 experiments, 1 seeds, 1 runs" in proc.stdout
    proc = subprocess.run(
        [PYTHON, "-m", "hpstudy", "check", str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"hpstudy: invalid study: {bad}: 1 error(s):" in proc.stderr


def test_effective_batch_size_derives_accumulation(tmp_path):
    from hpstudy.study import load_study

    path = _write_study(
        tmp_path,
        _group({"grid": {"batch_size": [16, 32, 64]}, "fixed": {"effective_batch_size": 64}}),
    )
    configs = {e.id: e.config for e in load_study(path).experiments}
    assert {k: (c.batch_size, c.grad_accum_steps) for k, c in configs.items()} == {
        "g-bs16": (16, 4),
        "g-bs32": (32, 2),
        "g-bs64": (64, 1),
    }


# -- datasets ------------------------------------------------------------------------------
N_IMAGES = 12


@pytest.fixture(scope="module")
def bead_folder(tmp_path_factory) -> Path:
    from hpstudy.microbeads import generate

    return generate(
        tmp_path_factory.mktemp("beads") / "clean", N_IMAGES, 16, seed=3, progress=False
    )


def _rows(folder: Path) -> list[str]:
    return (folder / "density.csv").read_text().splitlines()


def _write_rows(folder: Path, lines: list[str]) -> None:
    (folder / "density.csv").write_text("\n".join(lines) + "\n")


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _first_image(folder: Path) -> np.ndarray:
    return np.array(Image.open(folder / "bead_00000.png"))


# Each mutation breaks a copy of a clean folder; expected: substrings of the message.
DATASET_CASES = [
    ("folder_missing", lambda d: shutil.rmtree(d), ["microbead folder not found"]),
    (
        "density_csv_missing",
        lambda d: (d / "density.csv").unlink(),
        ["density.csv: missing", "columns filename,density"],
    ),
    (
        "column_missing",
        lambda d: _write_rows(d, [r.split(",")[0] for r in _rows(d)]),
        ["density.csv", "missing column(s) ['density']", "fix the first line"],
    ),
    (
        "column_extra",
        lambda d: _write_rows(
            d, [r + (",notes" if i == 0 else ",x") for i, r in enumerate(_rows(d))]
        ),
        ["density.csv", "extra column(s) ['notes']"],
    ),
    (
        "row_with_three_cells",
        lambda d: _write_rows(d, _rows(d)[:3] + [_rows(d)[3] + ",7"] + _rows(d)[4:]),
        ["density.csv:4", "expected 2 columns", "fix the row"],
    ),
    (
        "density_not_a_number",
        lambda d: _write_rows(d, _rows(d)[:2] + ["bead_00001.png,lots"] + _rows(d)[3:]),
        ["density.csv:3", "'lots' is not a number"],
    ),
    (
        "density_nan",
        lambda d: _write_rows(d, _rows(d)[:2] + ["bead_00001.png,nan"] + _rows(d)[3:]),
        ["density.csv:3", "'nan'", "finite number >= 0", "fix or remove the row"],
    ),
    (
        "density_inf",
        lambda d: _write_rows(d, _rows(d)[:2] + ["bead_00001.png,inf"] + _rows(d)[3:]),
        ["density.csv:3", "'inf'", "finite number >= 0"],
    ),
    (
        "density_negative",
        lambda d: _write_rows(d, _rows(d)[:2] + ["bead_00001.png,-5"] + _rows(d)[3:]),
        ["density.csv:3", "'-5'", "finite number >= 0"],
    ),
    ("no_rows", lambda d: _write_rows(d, _rows(d)[:1]), ["density.csv: no rows"]),
    (
        "duplicate_filename",
        lambda d: _write_rows(d, _rows(d) + [_rows(d)[1]]),
        [f"density.csv:{N_IMAGES + 2}", "duplicate filename 'bead_00000.png'", "line 2"],
    ),
    (
        "row_without_image",
        lambda d: (d / "bead_00004.png").unlink(),
        [
            "density.csv",
            "1 row(s) name images that do not exist",
            "bead_00004.png",
            "remove the rows",
        ],
    ),
    (
        "image_without_row",
        lambda d: shutil.copy(d / "bead_00000.png", d / "stray.png"),
        ["1 image(s) have no row in density.csv", "stray.png", "add rows"],
    ),
    (
        "truncated_image",
        lambda d: (d / "bead_00002.png").write_bytes((d / "bead_00002.png").read_bytes()[:60]),
        ["bead_00002.png", "unreadable or truncated image", "re-export or remove"],
    ),
    (
        "not_an_image",
        lambda d: (d / "bead_00002.png").write_text("density,42\n"),
        ["bead_00002.png", "unreadable or truncated image"],
    ),
    (
        "mixed_bit_depth",
        lambda d: _save_png(d / "bead_00003.png", _first_image(d).astype(np.uint16) * 200),
        [
            "images mix bit depths or channel counts",
            "uint8/1ch",
            "uint16/1ch",
            "convert them to one format",
        ],
    ),
    (
        "mixed_channels",
        lambda d: _save_png(d / "bead_00003.png", np.repeat(_first_image(d)[..., None], 3, axis=2)),
        ["images mix bit depths or channel counts", "uint8/3ch"],
    ),
    (
        "same_image_two_labels",
        lambda d: shutil.copy(d / "bead_00000.png", d / "bead_00005.png"),
        ["hold the same image but different densities", "fix the label"],
    ),
]


def _prepare(tmp_path: Path, location: Path, dataset: dict | None = None):
    study = copy.deepcopy(VALID_STUDY)
    study["dataset"].update(dataset or {})
    study_file = tmp_path / "studies" / "s.yaml"
    study_file.parent.mkdir(parents=True, exist_ok=True)
    study_file.write_text(yaml.safe_dump(study))
    out = tmp_path / "prepared"
    out.mkdir()
    return [
        str(study_file),
        str(location),
        str(out / "prepared.pt"),
        str(out / "manifest.json"),
    ], out


def _run_prepare_script(argv, monkeypatch, capsys) -> tuple[int, str]:
    """The prepare script run in-process as from the command line: (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["prepare.py", *argv])
    try:
        runpy.run_path(str(REPO / "workflow/scripts/prepare.py"), run_name="__main__")
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    "case_id, mutation, expected", DATASET_CASES, ids=[c[0] for c in DATASET_CASES]
)
def test_bad_dataset_is_rejected(
    tmp_path, monkeypatch, capsys, bead_folder, case_id, mutation, expected
):
    folder = tmp_path / "beads"
    shutil.copytree(bead_folder, folder)
    mutation(folder)
    argv, out = _prepare(tmp_path, folder)
    status, stderr = _run_prepare_script(argv, monkeypatch, capsys)
    assert status == 2, stderr
    assert stderr.startswith(f"hpstudy: dataset error: {folder}"), stderr
    for text in expected:
        assert text in stderr, f"{text!r} not in: {stderr}"
    assert files_under(out) == []  # no prepared file, manifest or temporary file


def test_empty_split_after_data_percentage(tmp_path, monkeypatch, capsys, bead_folder):
    argv, out = _prepare(tmp_path, bead_folder, {"data_percentage": 10})
    status, stderr = _run_prepare_script(argv, monkeypatch, capsys)
    assert status == 2, stderr
    assert f"{bead_folder}: the test split is empty after data_percentage=10" in stderr
    assert "(1 samples); raise data_percentage or change dataset.split" in stderr
    assert files_under(out) == []


def test_prepare_script_exit_status(tmp_path, bead_folder):
    """The prepare script, as a process, exits 2 with the reason on stderr."""
    argv, out = _prepare(tmp_path, tmp_path / "no_such_folder")
    proc = subprocess.run(
        [PYTHON, str(REPO / "workflow/scripts/prepare.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"hpstudy: dataset error: {tmp_path}/no_such_folder: microbead folder not found" in (
        proc.stderr
    )
    assert files_under(out) == []


def test_clean_folder_prepares_and_records_data_quality(tmp_path, monkeypatch, capsys, bead_folder):
    """The catalogue's clean folder passes; near-constant images and label outliers are
    warnings in the manifest's data_quality, not errors."""
    import json

    folder = tmp_path / "beads"
    shutil.copytree(bead_folder, folder)
    _save_png(folder / "bead_00007.png", np.full((16, 16), 9, np.uint8))
    rows = _rows(folder)
    rows[9] = "bead_00008.png,9000000"
    _write_rows(folder, rows)
    argv, out = _prepare(tmp_path, folder)
    status, stderr = _run_prepare_script(argv, monkeypatch, capsys)
    assert status == 0, stderr
    quality = json.loads((out / "manifest.json").read_text())["data_quality"]
    assert any(w.startswith("bead_00007.png: near-constant image") for w in quality), quality
    assert any(w.startswith("bead_00008.png: label outlier 9e+06") for w in quality), quality
    assert files_under(out) == ["manifest.json", "prepared.pt"]


# -- prepared files: training refuses a foreign or corrupted one -----------------------------
@pytest.fixture(scope="module")
def prepared_file(tmp_path_factory, bead_folder) -> Path:
    from hpstudy.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(VALID_STUDY["dataset"], bead_folder, out / "prepared.pt", out / "manifest.json")
    return out / "prepared.pt"


def _tamper_targets(path: Path) -> None:
    import torch

    data = torch.load(path, weights_only=True)
    data["targets"] = data["targets"] + 1.0  # manifest (with its checksum) left as it was
    torch.save(data, path)


def _other_format(path: Path) -> None:
    import torch

    data = torch.load(path, weights_only=True)
    data["format"] = "hpstudy-prepared/0"
    torch.save(data, path)


PREPARED_CASES = [
    ("missing", lambda p: p.unlink(), ["prepared file not found", "run the prepare rule"]),
    (
        "truncated",
        lambda p: p.write_bytes(p.read_bytes()[:1000]),
        ["not a readable prepared file", "delete it and rerun the prepare rule"],
    ),
    ("other_format", _other_format, ["format 'hpstudy-prepared/0' is not", "rerun prepare"]),
    (
        "content_changed",
        _tamper_targets,
        ["content checksum", "does not match the manifest's", "the file is corrupted"],
    ),
]


@pytest.mark.parametrize(
    "case_id, mutation, expected", PREPARED_CASES, ids=[c[0] for c in PREPARED_CASES]
)
def test_bad_prepared_file_is_refused(tmp_path, prepared_file, case_id, mutation, expected):
    from hpstudy.prepare import PreparedError, load_prepared

    path = tmp_path / "prepared.pt"
    shutil.copy(prepared_file, path)
    mutation(path)
    with pytest.raises(PreparedError) as err:
        load_prepared(path)
    assert str(err.value).startswith(str(path))
    for text in expected:
        assert text in str(err.value)


@pytest.mark.slow
def test_training_script_refuses_corrupted_prepared_file(tmp_path, prepared_file):
    path = tmp_path / "prepared.pt"
    shutil.copy(prepared_file, path)
    _tamper_targets(path)
    (tmp_path / "cfg.yaml").write_text("epochs: 1\nbatch_size: 4\n")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            PYTHON,
            str(REPO / "workflow/scripts/train.py"),
            str(tmp_path / "cfg.yaml"),
            str(path),
            str(run_dir),
            str(tmp_path / "ck" / "seed0.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HPSTUDY_DEVICE": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stderr
    assert f"hpstudy: refusing the prepared dataset: {path}: content checksum" in proc.stderr
    assert not (run_dir / "metrics.json").exists()
    assert not (run_dir / "history.csv").exists()


# -- the workflow stops before any job for bad input (real `snakemake -n`) ------------------
def _workflow_dir(tmp_path: Path, study_mutation=None, **config) -> Path:
    _write_study(tmp_path / "studies", study_mutation or (lambda study: None))
    settings = {
        "study": "s",
        "studies_dir": str(tmp_path / "studies"),
        "results_dir": str(tmp_path / "results"),
        "reports_dir": str(tmp_path / "reports"),
        "synthetic": {"n_images": 12, "image_size": 16, "seed": 0},
        **config,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path


def _snakemake_dry_run(folder: Path) -> subprocess.CompletedProcess:
    return run_snakemake(folder, "-n", "--cores", "1", check=False, timeout=300)


WORKFLOW_CASES = [
    (
        "bad_study",
        {"study_mutation": _set("base.lr", -0.1)},
        ["hpstudy: invalid study:", "s.yaml", "base.lr: -0.1 is not allowed"],
    ),
    (  # issue 21: the workflow reads study files with the same loader ...
        "repeated_key",
        {"study_mutation": _Text(("  epochs: 1\n", "  epochs: 1\n  epochs: 30\n"))},
        ["hpstudy: invalid study:", "base.epochs: the key 'epochs' appears twice"],
    ),
    (  # ... and checks it against its own data: 12 generated images, 7 for training
        "batch_without_steps_on_the_workflows_data",
        {"study_mutation": _set("base", {"epochs": 1, "batch_size": 8, "drop_last": True})},
        ["base.batch_size", "0 optimizer steps per epoch on the 7-image training split"],
    ),
    ("unknown_config_key", {"bogus": 1}, ["hpstudy: invalid config:", "unknown key(s) ['bogus']"]),
    (
        "unsafe_results_dir",
        {"results_dir": "my results;rm"},
        ["hpstudy: invalid config:", "results_dir: 'my results;rm' is not allowed"],
    ),
    (
        "microbead_dir_missing",
        {"microbead_dir": "/nonexistent/beads"},
        ["microbead_dir=/nonexistent/beads does not exist", "density.csv"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case_id, settings, expected", WORKFLOW_CASES, ids=[c[0] for c in WORKFLOW_CASES]
)
def test_workflow_refuses_before_any_job(tmp_path, case_id, settings, expected):
    folder = _workflow_dir(tmp_path, **settings)
    proc = _snakemake_dry_run(folder)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in: {proc.stderr}"
    assert "Job stats" not in proc.stdout + proc.stderr  # stopped before planning jobs
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()


# -- a failing job's reason reaches the console (profiles/default: show-failed-logs) ---------
CONSOLE_CASES = [
    "density_negative",
    "row_with_three_cells",
    "density_not_a_number",
    "row_without_image",
    "truncated_image",
    "mixed_bit_depth",
    "same_image_two_labels",
]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", CONSOLE_CASES)
def test_bad_microbead_folder_culprit_on_the_console(tmp_path, bead_folder, case_id):
    """A plain `snakemake --cores 1 --config microbead_dir=...` (no profile given) prints the
    prepare job's message, not only "check log file(s) for error details"."""
    _, mutation, expected = next(c for c in DATASET_CASES if c[0] == case_id)
    folder = tmp_path / "beads"
    shutil.copytree(bead_folder, folder)
    mutation(folder)
    work = _workflow_dir(tmp_path / "work", microbead_dir=str(folder))
    proc = run_snakemake(work, "--cores", "1", check=False, timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console
    assert "workflow specific profile profiles/default" in console
    for text in expected:
        assert text in console, f"{text!r} not on the console:\n{console[-3000:]}"


# -- a checkpoint cannot run code ------------------------------------------------------------
class _CodeInPickle:
    """Unpickling this calls Path.touch: what a malicious or foreign checkpoint could do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_checkpoint_with_code_is_not_executed(tmp_path, prepared_file):
    """Checkpoints are loaded with weights_only=True: a checkpoint holding a pickled callable
    is refused as unreadable (the run starts afresh) and its code never runs."""
    import torch

    from hpstudy.config import TrainConfig
    from hpstudy.train import run

    marker = tmp_path / "code_ran"
    checkpoint = tmp_path / "checkpoints" / "seed0.pt"
    checkpoint.parent.mkdir()
    torch.save({"format": "hpstudy-checkpoint/1", "model": _CodeInPickle(marker)}, checkpoint)
    lines: list[str] = []
    cfg = TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "diagnostics_every": 0})
    metrics = run(cfg, prepared_file, tmp_path / "run", checkpoint, log=lines.append)
    assert not marker.exists()
    assert any(f"checkpoint {checkpoint} is unreadable" in line for line in lines), lines
    assert metrics["status"] == "ok" and metrics["resumed_at"] == []
