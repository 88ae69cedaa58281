"""Rotation, colour jitter and CutMix/MixUp: geometry, ranges, label bookkeeping and
reproducibility; a mixing run through the real trainer on tiny CIFAR files."""

import json

import pytest
import torch
from fake_datasets import write_cifar10

from hpstudy.augment import Augmenter, color_jitter, rotate, rotate_by
from hpstudy.config import ConfigError, TrainConfig

torch.set_num_threads(1)  # 2 shared cores: a second thread only oversubscribes them


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rotation_geometry_matches_exact_quarter_turns():
    x = torch.rand(2, 3, 8, 8)
    out = rotate_by(x, torch.tensor([90.0, -90.0]))
    torch.testing.assert_close(out[0], torch.rot90(x[0], 1, dims=(1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], -1, dims=(1, 2)), atol=1e-5, rtol=0)
    wide = torch.rand(1, 1, 4, 6)  # non-square images stay rigid: 180 degrees = both flips
    torch.testing.assert_close(
        rotate_by(wide, torch.tensor([180.0])), wide.flip(2).flip(3), atol=1e-5, rtol=0
    )


def test_random_rotation_stays_within_the_configured_angle():
    # a single bright pixel at (row 2, col 4) of a 9x9 image; centre (4, 4); radius 2
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 2, 4] = 1.0
    out = rotate(x, gen(1), degrees=15.0)
    assert not torch.equal(out, x)
    cols = torch.arange(9.0).view(1, 1, 1, 9)
    rows = torch.arange(9.0).view(1, 1, 9, 1)
    mass = out.sum(dim=(1, 2, 3))
    dx = (out * cols).sum(dim=(1, 2, 3)) / mass - 4
    dy = 4 - (out * rows).sum(dim=(1, 2, 3)) / mass
    angle = torch.rad2deg(torch.atan2(-dx, dy))  # 0 = straight up, positive = anticlockwise
    assert angle.abs().max() <= 16.0  # 15 degrees plus bilinear centroid error
    assert angle.min() < -5 and angle.max() > 5  # both directions are drawn


def test_colour_jitter_ranges_and_per_image_factors():
    x = torch.rand(1, 3, 6, 6).repeat(16, 1, 1, 1)  # 16 copies of one image
    out = color_jitter(x, gen(2), strength=0.4)
    assert out.min() >= 0 and out.max() <= 1
    assert len({round(float(v), 5) for v in out.mean(dim=(1, 2, 3))}) == 16  # per image
    torch.testing.assert_close(color_jitter(x, gen(2), strength=0.0), x)
    bright = color_jitter(torch.full((200, 1, 2, 2), 0.5), gen(3), strength=0.2)
    # grayscale: brightness then contrast (a no-op on a flat image): 0.5 * [0.8, 1.2]
    assert 0.4 - 1e-6 <= bright.min() and bright.max() <= 0.6 + 1e-6


def test_jitter_on_normalised_inputs_equals_jitter_in_pixel_space():
    cfg = TrainConfig(augment=("jitter",), color_jitter=0.3)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x01 = torch.rand(4, 3, 5, 5)
    y = torch.zeros(4)
    out, _ = Augmenter(cfg, "regression", mean=mean, std=std)((x01 - m) / s, y, gen(4))
    torch.testing.assert_close(out * s + m, color_jitter(x01, gen(4), 0.3), atol=1e-5, rtol=0)


def test_cutmix_labels_equal_the_pasted_area():
    cfg = TrainConfig(mix="cutmix", mix_alpha=1.0)
    aug = Augmenter(cfg, "classification", num_classes=8)
    n = 8
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 16, 16).clone()
    y = torch.arange(n)  # image i is filled with the value i and has class i
    torch.manual_seed(5)
    out, soft = aug(x, y, gen())
    assert soft.shape == (n, 8)
    torch.testing.assert_close(soft.sum(1), torch.ones(n))
    for i in range(n):
        own = float((out[i] == i).float().mean())
        assert soft[i, i].item() == pytest.approx(own, abs=1e-6)


def test_mixup_blends_images_and_labels_with_one_weight():
    cfg = TrainConfig(mix="mixup", mix_alpha=0.4)
    aug = Augmenter(cfg, "classification", num_classes=4)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 3, 3).clone()
    y = torch.arange(4)
    torch.manual_seed(6)
    out, soft = aug(x, y, gen())
    # image k holds the value k and has class k, so each pixel must equal sum_k weight_k * k
    torch.testing.assert_close(out[:, 0, 0, 0], soft @ torch.arange(4.0))
    assert ((soft > 0).sum(1) == 2).all()  # every image blended with exactly one other


def test_mixing_is_reproducible_under_the_trainers_seeding():
    cfg = TrainConfig(augment=("hflip", "crop", "rotate", "jitter"), mix="cutmix_mixup")
    aug = Augmenter(cfg, "classification", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)
    x, y = torch.randn(8, 3, 12, 12), torch.randint(0, 10, (8,))
    runs = []
    for _ in range(2):
        torch.manual_seed(11)  # the trainer seeds the global RNG at every epoch start
        runs.append(aug(x, y, gen(3)))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    torch.manual_seed(12)
    assert not torch.equal(aug(x, y, gen(4))[0], runs[0][0])


def test_mixing_needs_classes_and_a_positive_alpha():
    with pytest.raises(ValueError, match="regression task has none: set mix: none"):
        Augmenter(TrainConfig(mix="mixup"), "regression")
    with pytest.raises(ConfigError, match="mix_alpha=0"):
        TrainConfig(mix="cutmix", mix_alpha=0)


def test_mix_on_a_regression_study_is_a_load_time_error(tmp_path):
    from hpstudy.study import load_study
    from hpstudy.studyfile import StudyError

    path = tmp_path / "mixreg.yaml"
    path.write_text("""name: mixreg
dataset: {name: vgg_cells}
base: {model: resnet_shallow, epochs: 1}
groups:
  g:
    grid: {mix: [none, cutmix_mixup]}
""")
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert str(path) in str(err.value) and "groups.g" in str(err.value)
    assert "g-mixcutmix_mixup" in str(err.value) and "set mix: none" in str(err.value)


def test_cifar_run_with_every_augmentation_and_mixing_trains(tmp_path):
    """Soft labels through the real loop: losses finite, accuracy still measured on hard
    labels (a 10-class problem scored in [0, 1])."""
    from hpstudy.prepare import prepare
    from hpstudy.train import run

    write_cifar10(tmp_path / "root", per_batch=6, n_test=8)
    spec = {
        "name": "cifar10",
        "image_size": 16,
        "split": {"method": "predefined", "val": 0.2, "seed": 0},
    }
    prepare(spec, tmp_path / "root", tmp_path / "p.pt", tmp_path / "m.json")
    cfg = TrainConfig(
        model="lenet",
        epochs=2,
        batch_size=8,
        lr=0.01,
        optimizer="sgd",
        augment=("crop", "hflip", "rotate", "jitter"),
        mix="cutmix_mixup",
        patience=None,
        diagnostics_every=0,
    )
    metrics = run(
        cfg, tmp_path / "p.pt", tmp_path / "out", tmp_path / "ck.pt", log=lambda msg: None
    )
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 2
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_loss"] > 0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["n_train"] == 24
