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
