"""Tiny CIFAR-10/100 and MNIST files in the real on-disk formats (torchvision's layout), and
small VGG-cells-style image pairs, written by tests. Pixel values encode (sample, channel,
row, column) so a reader that mixes up the layout is caught."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def pixel_pattern(index: int, channels: int, side: int) -> np.ndarray:
    """HxWxC uint8 image whose values depend on sample, channel, row and column."""
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    planes = [(index * 7 + c * 50 + rows * 3 + cols) % 256 for c in range(channels)]
    return np.stack(planes, axis=2).astype(np.uint8)


def _cifar_rows(start: int, n: int) -> np.ndarray:
    # the official rows are channel-planar: 1024 R values, then 1024 G, then 1024 B
    return np.stack(
        [pixel_pattern(start + i, 3, 32).transpose(2, 0, 1).reshape(-1) for i in range(n)]
    )


def _dump(path: Path, data: dict) -> None:
    with open(path, "wb") as fh:  # bytes keys and protocol 2, like the Python 2 originals
        pickle.dump(data, fh, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4) -> dict:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    labels, start = [], 0
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        batch_labels = [(start + i) % 10 for i in range(n)]
        _dump(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"labels": batch_labels,
                b"data": _cifar_rows(start, n),
                b"filenames": [f"img{start + i}.png".encode() for i in range(n)],
            },
        )
        labels += batch_labels
        start += n
    _dump(
        folder / "batches.meta",
        {
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_cases_per_batch": per_batch,
            b"num_vis": 3072,
        },
    )
    return {"n_train": 5 * per_batch, "n_test": n_test, "labels": labels}


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> dict:
    """cifar-100-python/ with train, test (fine and coarse labels) and meta."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    labels, start = [], 0
    for name, n in (("train", n_train), ("test", n_test)):
        fine = [(start + i) * 13 % 100 for i in range(n)]
        _dump(
            folder / name,
            {
                b"filenames": [b"x.png"] * n,
                b"batch_label": name.encode(),
                b"fine_labels": fine,
                b"coarse_labels": [f // 5 for f in fine],
                b"data": _cifar_rows(start, n),
            },
        )
        labels += fine
        start += n
    _dump(folder / "meta", {b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20})
    return {"n_train": n_train, "n_test": n_test, "labels": labels}


def _idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    blob = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as fh:
            fh.write(blob)
    else:
        path.write_bytes(blob)


def write_mnist(root: Path, n_train: int = 5, n_test: int = 3, compress: bool = True) -> dict:
    """MNIST/raw/ with the four IDX files (gzipped, as downloaded, or not)."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, n_train)):
        images = np.stack([pixel_pattern(offset + i, 1, 28)[..., 0] for i in range(n)])
        y = np.array([(offset + i) % 10 for i in range(n)], np.uint8)
        _idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", y, compress)
        labels += y.tolist()
    return {"n_train": n_train, "n_test": n_test, "labels": labels}


def write_vgg_cells(folder: Path, counts: list[int], side: int = 24, seed: int = 0) -> Path:
    """NNNcell.png (blue signal, weak red/green noise) + NNNdots.png (`count` red pixels)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, count in enumerate(counts, start=1):
        cell = rng.integers(0, 40, (side, side, 3), dtype=np.uint8)
        dots = np.zeros((side, side, 3), np.uint8)
        where = rng.choice(side * side, size=count, replace=False)
        dots.reshape(-1, 3)[where, 0] = 255
        cell.reshape(-1, 3)[where, 2] = 200 + i  # bright blue where the cells are
        Image.fromarray(cell).save(folder / f"{i:03d}cell.png")
        Image.fromarray(dots).save(folder / f"{i:03d}dots.png")
    return folder
