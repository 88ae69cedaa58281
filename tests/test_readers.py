"""CIFAR-10/100, MNIST and VGG cells readers on small files in the real formats, written here,
and on real VGG cells files from ../shared/datasets/vgg_cells."""

import shutil
from pathlib import Path

import fake_datasets as fake
import numpy as np
import pytest

from hpstudy.datasets import DatasetError, missing_files, read_dataset
from hpstudy.prepare import load_prepared, prepare

VGG_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "vgg_cells"


@pytest.mark.parametrize(
    "name, write, classes",
    [("cifar10", fake.write_cifar10, 10), ("cifar100", fake.write_cifar100, 100)],
)
def test_cifar_reader_decodes_layout_labels_and_split(tmp_path, name, write, classes):
    truth = write(tmp_path)
    raw = read_dataset({"name": name}, tmp_path)
    n = truth["n_train"] + truth["n_test"]
    assert raw.task == "classification" and raw.num_classes == classes
    assert len(raw.images) == n and raw.images[0].shape == (32, 32, 3)
    for i in (0, n - 1):  # channel-planar rows become HxWxC pixels
        np.testing.assert_array_equal(raw.images[i], fake.pixel_pattern(i, 3, 32))
    assert raw.targets.tolist() == truth["labels"]
    assert raw.predefined_split["train"].tolist() == list(range(truth["n_train"]))
    assert raw.predefined_split["test"].tolist() == list(range(truth["n_train"], n))
    assert len(raw.files) == (7 if name == "cifar10" else 3)  # every file checksummed


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reader_reads_idx_files_gz_or_not(tmp_path, compress):
    truth = fake.write_mnist(tmp_path, compress=compress)
    raw = read_dataset({"name": "mnist"}, tmp_path)
    assert raw.images[0].shape == (28, 28, 1) and raw.num_classes == 10
    np.testing.assert_array_equal(raw.images[6], fake.pixel_pattern(6, 1, 28))
    assert raw.targets.tolist() == truth["labels"]
    assert raw.predefined_split["test"].tolist() == [5, 6, 7]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("vgg_cells", "NNNcell.png"),
    ],
)
def test_missing_files_are_named_and_nothing_is_downloaded(tmp_path, name, expected):
    assert any(expected in m for m in missing_files(name, tmp_path))
    with pytest.raises(DatasetError) as err:
        read_dataset({"name": name}, tmp_path)
    assert str(tmp_path) in str(err.value) and expected.split("/")[0] in str(err.value)


def test_corrupt_files_are_clear_errors(tmp_path):
    fake.write_mnist(tmp_path, compress=False)
    images = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte: .*truncated"):
        read_dataset({"name": "mnist"}, tmp_path)
    fake.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3: not a readable CIFAR pickle"):
        read_dataset({"name": "cifar10"}, tmp_path)


def test_prepared_cifar_keeps_the_official_test_set_and_carves_validation(tmp_path):
    fake.write_cifar10(tmp_path / "root", per_batch=4, n_test=5)
    spec = {"name": "cifar10", "split": {"method": "predefined", "val": 0.25, "seed": 1}}
    manifest = prepare(spec, tmp_path / "root", tmp_path / "p.pt", tmp_path / "m.json")
    assert manifest["split_sizes"] == {"train": 15, "val": 5, "test": 5}
    data = load_prepared(tmp_path / "p.pt")
    assert data["split"]["test"].tolist() == [20, 21, 22, 23, 24]
    assert data["images"].shape == (25, 3, 32, 32)
    assert manifest["task"] == "classification" and manifest["num_classes"] == 10


def test_vgg_cells_reader_on_generated_pairs(tmp_path):
    folder = fake.write_vgg_cells(tmp_path / "cells", counts=[5, 12, 1])
    raw = read_dataset({"name": "vgg_cells"}, folder)
    assert raw.targets.tolist() == [5.0, 12.0, 1.0]
    assert raw.task == "regression" and raw.target_name == "count"
    assert raw.names == ["001", "002", "003"]
    assert raw.images[0].shape == (24, 24, 1)
    assert raw.images[1].max() == 202  # the blue channel, where write_vgg_cells put 200 + i
    (folder / "002dots.png").unlink()
    with pytest.raises(DatasetError, match="002dots.png: missing"):
        read_dataset({"name": "vgg_cells"}, folder)


@pytest.mark.skipif(not VGG_DIR.is_dir(), reason="../shared/datasets/vgg_cells not present")
def test_vgg_cells_reader_on_real_files_counts_red_dots(tmp_path):
    from PIL import Image

    for i in range(1, 5):
        for kind in ("cell", "dots"):
            shutil.copy(VGG_DIR / f"{i:03d}{kind}.png", tmp_path)
    raw = read_dataset({"name": "vgg_cells"}, tmp_path)
    # SOURCE.md: count = sum(R)/255, since every annotated pixel is pure red (255, 0, 0)
    expected = [
        np.asarray(Image.open(tmp_path / f"{i:03d}dots.png"))[..., 0].sum() / 255
        for i in range(1, 5)
    ]
    assert raw.targets.tolist() == expected
    assert raw.images[0].shape == (256, 256, 1) and not raw.warnings
    cell = np.asarray(Image.open(tmp_path / "001cell.png"))
    np.testing.assert_array_equal(raw.images[0][..., 0], cell[..., 2])


@pytest.mark.skipif(not VGG_DIR.is_dir(), reason="../shared/datasets/vgg_cells not present")
def test_vgg_cells_real_dataset_matches_its_documented_statistics():
    raw = read_dataset({"name": "vgg_cells"}, VGG_DIR)
    # SOURCE.md: 200 images; counts total 35,192, mean 175.96, min 74, max 317
    assert len(raw.images) == 200
    assert raw.targets.sum() == 35_192
    assert (raw.targets.min(), raw.targets.max()) == (74, 317)


def test_cifar_pickle_that_holds_code_is_refused(tmp_path):
    import os
    import pickle

    from hpstudy.datasets import DatasetError, _unpickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "ran"),))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Payload()}))
    with pytest.raises(DatasetError, match="refusing to load"):
        _unpickle(path)
    assert not (tmp_path / "ran").exists()
