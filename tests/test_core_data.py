import hashlib

import numpy as np
import pytest
import torch

from hpstudy.microbeads import MAX_BEADS, MIN_BEADS, density_per_mm2, generate
from hpstudy.prepare import PreparedError, load_prepared, prepare


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_generator_is_deterministic_and_labels_are_plausible(tmp_path):
    a = generate(tmp_path / "a", n_images=6, size=64, seed=5, progress=False)
    b = generate(tmp_path / "b", n_images=6, size=64, seed=5, progress=False)
    c = generate(tmp_path / "c", n_images=6, size=64, seed=6, progress=False)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    densities = np.loadtxt(a / "density.csv", delimiter=",", skiprows=1, usecols=1)
    # densities are per mm^2 and independent of the rendered size
    assert densities.min() >= density_per_mm2(MIN_BEADS, 256) * 0.9
    assert densities.max() <= density_per_mm2(MAX_BEADS, 256) * 1.1
    assert 300 < densities.mean() < 3100


def test_density_tracks_bead_count(microbead_dir):
    """The signal the model must learn exists: light above the background tracks density."""
    from PIL import Image

    densities = np.loadtxt(microbead_dir / "density.csv", delimiter=",", skiprows=1, usecols=1)
    names = np.loadtxt(
        microbead_dir / "density.csv", delimiter=",", skiprows=1, usecols=0, dtype=str
    )
    images = [np.asarray(Image.open(microbead_dir / n), float) for n in names]
    brightness = [np.clip(im - np.median(im), 0, None).sum() for im in images]
    assert np.corrcoef(brightness, densities)[0, 1] > 0.8


def test_prepared_file_contents(prepared):
    data = load_prepared(prepared)
    manifest = data["manifest"]
    assert data["images"].dtype == torch.uint8 and tuple(data["images"].shape) == (80, 1, 32, 32)
    assert data["targets"].dtype == torch.float32
    sizes = {k: len(v) for k, v in data["split"].items()}
    assert sizes == {"train": 56, "val": 12, "test": 12} == manifest["split_sizes"]
    assert not set(data["split"]["train"]) & set(data["split"]["test"])
    assert len(manifest["files"]) == 81  # 80 images + density.csv, each with a checksum
    train = data["images"][torch.from_numpy(data["split"]["train"])].double() / 255
    assert manifest["mean"][0] == pytest.approx(float(train.mean()), rel=1e-6)


def test_split_and_subsample_are_deterministic(microbead_dir, tmp_path):
    spec = {"name": "microbeads", "data_percentage": 50, "image_size": 16, "split": {"seed": 9}}
    m1 = prepare(spec, microbead_dir, tmp_path / "a.pt")
    m2 = prepare(spec, microbead_dir, tmp_path / "b.pt")
    m3 = prepare({**spec, "split": {"seed": 10}}, microbead_dir, tmp_path / "c.pt")
    assert m1["n_samples"] == 40
    assert m1["content_sha256"] == m2["content_sha256"] != m3["content_sha256"]


def test_corrupted_prepared_file_is_refused(prepared, tmp_path):
    data = torch.load(prepared, weights_only=True)
    data["images"][0, 0, 0, 0] ^= 1  # one flipped bit in one pixel
    bad = tmp_path / "bad.pt"
    torch.save(data, bad)
    with pytest.raises(PreparedError, match="checksum .* does not match"):
        load_prepared(bad)
    data["format"] = "something-else/0"
    torch.save(data, bad)
    with pytest.raises(PreparedError, match="format"):
        load_prepared(bad)


def test_a_split_per_run_is_drawn_from_each_run_s_seed(microbead_dir, tmp_path):
    """`split: {seed: per_run}` (issue 20, item 7): the prepared file keeps the pool and the
    fixed split of seed 42 (same content as `seed: 42`); each run draws its own split from its
    seed, with its own normalisation statistics; a fixed seed keeps the prepared split."""
    from hpstudy.prepare import run_split, split_statistics

    base = {"name": "microbeads", "image_size": 16, "split": {"method": "random", "seed": 42}}
    fixed = prepare(base, microbead_dir, tmp_path / "fixed.pt")
    per_run = {**base, "split": {"method": "random", "seed": "per_run"}}
    manifest = prepare(per_run, microbead_dir, tmp_path / "per_run.pt")
    assert manifest["split_per_run"] and not fixed["split_per_run"]
    assert manifest["content_sha256"] == fixed["content_sha256"]
    data = load_prepared(tmp_path / "per_run.pt")
    splits = {seed: run_split(data, seed) for seed in (0, 1, 0)}
    (a, ma), (b, mb) = splits[0], splits[1]
    assert {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}
    assert not np.array_equal(a["train"], b["train"])  # the seeds vary the split
    assert np.array_equal(run_split(data, 0)[0]["test"], a["test"])  # the same seed, the same
    for split in (a, b):
        parts = [set(split[k].tolist()) for k in ("train", "val", "test")]
        assert not (parts[0] & parts[2]) and not (parts[1] & parts[2]) and not (parts[0] & parts[1])
        assert set().union(*parts) == set(range(manifest["n_samples"]))
    stats = split_statistics(
        data["images"].numpy(), data["targets"].numpy(), a["train"], "regression"
    )
    assert ma["mean"] == stats["mean"] and ma["target_mean"] == stats["target_mean"]
    assert ma["split_seed"] == 0 and mb["target_mean"] != ma["target_mean"]
    kept, same = run_split(load_prepared(tmp_path / "fixed.pt"), 3)
    assert "split_seed" not in same
    assert np.array_equal(kept["train"], load_prepared(tmp_path / "fixed.pt")["split"]["train"])


def test_a_predefined_test_set_stays_when_the_split_is_per_run():
    from hpstudy.prepare import run_split

    images = np.arange(20 * 4, dtype=np.uint8).reshape(20, 1, 2, 2)
    data = {
        "images": images,
        "targets": np.arange(20, dtype=np.int64) % 3,
        "split": {"train": np.arange(0, 12), "val": np.arange(12, 15), "test": np.arange(15, 20)},
        "manifest": {
            "dataset": {"split": {"method": "predefined", "seed": "per_run"}},
            "task": "classification",
            "n_samples": 20,
        },
    }
    a, _ = run_split(data, 0)
    b, _ = run_split(data, 1)
    assert np.array_equal(a["test"], np.arange(15, 20)) and np.array_equal(b["test"], a["test"])
    assert len(a["val"]) == 3 and not np.array_equal(a["val"], b["val"])
    assert sorted([*a["train"], *a["val"]]) == list(range(15))
