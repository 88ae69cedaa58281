"""Dataset readers: each turns a raw dataset on disk into a `RawDataset` in memory
(hpstudy.raw_data), and the facts known about each dataset before reading it (its task,
target and units, the files it needs).

Readers check what they read and raise `DatasetError` naming the file and the fix. Every
source file's SHA-256 goes into the prepared manifest. Readers are registered in `READERS`
by the dataset name used in study files (`dataset.name`): the microbead folder
(hpstudy.microbead_folder), CIFAR-10/100 and MNIST from torchvision's on-disk layout, VGG
cells.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hpstudy.microbead_folder import read_microbead_folder
from hpstudy.raw_data import DatasetError, RawDataset, read_image, sha256_file

__all__ = ["DatasetError", "RawDataset", "read_dataset", "read_microbead_folder"]

# -- standard benchmark datasets, read from torchvision's on-disk layout (never downloaded) --

CIFAR_FILES = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta"),
}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# What a dataset's task is, known before reading it (study files are checked against it).
DATASET_TASKS = {
    "microbeads": "regression",
    "vgg_cells": "regression",
    "cifar10": "classification",
    "cifar100": "classification",
    "mnist": "classification",
}
# What each dataset's models predict, and in which units: the one place the report (and
# anything else that states units) reads them. Classification targets have no units.
DATASET_TARGETS = {
    "microbeads": ("microbead density per image", "beads/mm²"),
    "vgg_cells": ("cell count per image", "cells"),
    "cifar10": ("class of each image (10 classes)", ""),
    "cifar100": ("class of each image (100 classes)", ""),
    "mnist": ("digit in each image (10 classes)", ""),
}


def missing_files(name: str, location: str | Path) -> list[str]:
    """The files a reader needs that are absent at `location` (empty when all are there);
    cheap, so the workflow can check before any job runs."""
    root = Path(location)
    if name in CIFAR_FILES:
        folder, train, test, meta = CIFAR_FILES[name]
        return [f"{folder}/{f}" for f in [*train, *test, meta] if not (root / folder / f).is_file()]
    if name == "mnist":
        return [
            f"MNIST/raw/{f}"
            for pair in MNIST_FILES.values()
            for f in pair
            if not _idx_path(root / "MNIST" / "raw", f)
        ]
    if name == "microbeads":  # images + density.csv; the reader checks the rest
        return [] if (root / "density.csv").is_file() else ["density.csv"]
    if name == "vgg_cells":
        if not root.is_dir() or not any(root.glob("*cell.png")):
            return ["NNNcell.png + NNNdots.png pairs"]
    return []


def _require_files(name: str, location: str | Path, fix: str) -> Path:
    missing = missing_files(name, location)
    if missing:
        raise DatasetError(
            f"{location}: {name} files not found: {missing}; {fix} (nothing is "
            "downloaded at run time)"
        )
    return Path(location)


# What the official CIFAR pickles (and numpy arrays pickled by any numpy) may reference;
# anything else in a file is refused instead of run.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
}


def _safe_unpickler(fh):
    import pickle

    class SafeUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in _PICKLE_ALLOWED:
                raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
            return super().find_class(module, name)

    return SafeUnpickler(fh, encoding="bytes")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = _safe_unpickler(fh).load()
    except Exception as err:  # truncated or foreign files raise many types
        raise DatasetError(
            f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err}); "
            "replace it with the file from the official archive"
        ) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    data = _unpickle(path)
    for key in ("data", label_key):
        if key not in data:
            raise DatasetError(
                f"{path}: key {key!r} missing (found {sorted(data)}); is this "
                "the right CIFAR variant?"
            )
    images = np.asarray(data["data"], dtype=np.uint8)
    labels = np.asarray(data[label_key], dtype=np.int64)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
        raise DatasetError(
            f"{path}: data has shape {images.shape} for {len(labels)} labels; "
            "expected (N, 3072) uint8 rows, one per label"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: {label_key} outside 0..{num_classes - 1}")
    # rows are channel-planar (R plane, G plane, B plane); readers return HxWxC
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar(name: str, root: str | Path) -> RawDataset:
    """CIFAR-10 (`cifar-10-batches-py/`: data_batch_1..5, test_batch, batches.meta) or
    CIFAR-100 (`cifar-100-python/`: train, test, meta; the 100 fine labels) under `root`,
    as torchvision lays them out. The official train/test split is kept (predefined)."""
    root = _require_files(
        name, root, "unpack the official python archive under data_root (--config data_root=PATH)"
    )
    folder, train_files, test_files, meta_file = CIFAR_FILES[name]
    num_classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    parts, files, names, split = [], {}, [], {}
    offset = 0
    for part, batch_files in (("train", train_files), ("test", test_files)):
        start = offset
        for fname in batch_files:
            path = root / folder / fname
            images, labels = _cifar_batch(path, label_key, num_classes)
            parts.append((images, labels))
            files[f"{folder}/{fname}"] = sha256_file(path)
            names += [f"{fname}:{i}" for i in range(len(labels))]
            offset += len(labels)
        split[part] = np.arange(start, offset)
    meta = root / folder / meta_file
    files[f"{folder}/{meta_file}"] = sha256_file(meta)
    images = np.concatenate([p[0] for p in parts])
    return RawDataset(
        images=list(images),
        targets=np.concatenate([p[1] for p in parts]),
        task="classification",
        names=names,
        files=files,
        num_classes=num_classes,
        target_name="class",
        predefined_split=split,
        source=str(root / folder),
    )


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format: big-endian magic 0x0000TTDD, dims, then data), gz or not."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError) as err:
        raise DatasetError(
            f"{path}: unreadable ({err}); replace it with the original file"
        ) from None
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] != 0x08:
        raise DatasetError(
            f"{path}: not an unsigned-byte IDX file (magic {blob[:4].hex()}, expected 000008DD)"
        )
    ndim = blob[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(blob) != header + int(np.prod(dims)):
        raise DatasetError(
            f"{path}: {len(blob) - header} data bytes for dims {dims}; the file "
            "is truncated or corrupted"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(dims)


def read_mnist(root: str | Path) -> RawDataset:
    """MNIST from `MNIST/raw/` under `root` (train-/t10k- images and labels, IDX files,
    optionally .gz). 28x28 grayscale, 10 classes, the official 60k/10k split kept."""
    root = _require_files(
        "mnist", root, "put the four IDX files under data_root/MNIST/raw/ (--config data_root=PATH)"
    )
    folder = root / "MNIST" / "raw"
    images, labels, files, names, split, offset = [], [], {}, [], {}, 0
    for part, (img_stem, lab_stem) in MNIST_FILES.items():
        img_path, lab_path = _idx_path(folder, img_stem), _idx_path(folder, lab_stem)
        x, y = read_idx(img_path), read_idx(lab_path).astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(
                f"{img_path}: images {x.shape} do not match labels {y.shape} in {lab_path.name}"
            )
        if len(y) and y.max() > 9:
            raise DatasetError(f"{lab_path}: labels outside 0..9")
        images.append(x[..., None])
        labels.append(y)
        for path in (img_path, lab_path):
            files[f"MNIST/raw/{path.name}"] = sha256_file(path)
        names += [f"{part}:{i}" for i in range(len(y))]
        split[part] = np.arange(offset, offset + len(y))
        offset += len(y)
    return RawDataset(
        images=list(np.concatenate(images)),
        targets=np.concatenate(labels),
        task="classification",
        names=names,
        files=files,
        num_classes=10,
        target_name="class",
        predefined_split=split,
        source=str(folder),
    )


def read_vgg_cells(root: str | Path) -> RawDataset:
    """VGG synthetic fluorescence cells (Lempitsky & Zisserman 2010): `NNNcell.png` (RGB, the
    signal is in the blue channel, returned as one channel) and `NNNdots.png` (one pure red
    pixel per cell). Target: the cell count = number of pixels with red > 0."""
    root = Path(root)
    if missing_files("vgg_cells", root):
        raise DatasetError(
            f"{root}: no VGG cells found; expected NNNcell.png and NNNdots.png "
            "pairs (001cell.png, 001dots.png, ...); set --config "
            "vgg_cells_dir=PATH"
        )
    cells = sorted(root.glob("*cell.png"))
    images, targets, names, files, warnings = [], [], [], {}, []
    for cell in cells:
        stem = cell.name[: -len("cell.png")]
        dots = root / f"{stem}dots.png"
        if not dots.is_file():
            raise DatasetError(
                f"{dots}: missing; every NNNcell.png needs its NNNdots.png annotation"
            )
        image, annotation = read_image(cell), read_image(dots)
        if image.dtype != np.uint8 or image.shape[2] != 3 or annotation.shape[2] != 3:
            raise DatasetError(
                f"{cell}: expected 8-bit RGB cell and dots images, got "
                f"{image.dtype}/{image.shape[2]}ch and {annotation.shape[2]}ch"
            )
        if annotation.shape[:2] != image.shape[:2]:
            raise DatasetError(
                f"{dots}: size {annotation.shape[:2]} differs from the cell "
                f"image's {image.shape[:2]}"
            )
        red = annotation[..., 0] > 0
        if (annotation[..., 1:][~red] > 0).any() or (annotation[red, 1:] > 0).any():
            warnings.append(f"{dots.name}: has non-red annotation pixels; counted red > 0 only")
        images.append(np.ascontiguousarray(image[..., 2:3]))  # blue channel: the signal
        targets.append(float(red.sum()))
        names.append(stem)
        files[cell.name], files[dots.name] = sha256_file(cell), sha256_file(dots)
    return RawDataset(
        images=images,
        targets=np.array(targets),
        task="regression",
        names=names,
        files=files,
        target_name="count",
        warnings=warnings,
        source=str(root),
    )


# name -> reader(spec, location) ; `location` is the folder or root given in the config.
READERS: dict[str, Callable[[dict[str, Any], str | Path], RawDataset]] = {
    "microbeads": lambda spec, location: read_microbead_folder(location),
    "cifar10": lambda spec, location: read_cifar("cifar10", location),
    "cifar100": lambda spec, location: read_cifar("cifar100", location),
    "mnist": lambda spec, location: read_mnist(location),
    "vgg_cells": lambda spec, location: read_vgg_cells(location),
}


def read_dataset(spec: dict[str, Any], location: str | Path) -> RawDataset:
    name = spec["name"]
    if name not in READERS:
        raise DatasetError(f"dataset.name={name!r} has no reader; known: {sorted(READERS)}")
    return READERS[name](spec, location)
