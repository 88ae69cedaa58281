"""Dataset readers: each turns a raw dataset on disk into a `RawDataset` in memory.

Readers check what they read and raise `DatasetError` naming the file and the fix. Every
source file's SHA-256 goes into the prepared manifest. Readers are registered in `READERS`
by the dataset name used in study files (`dataset.name`).
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message names the file and the fix."""


@dataclass
class RawDataset:
    images: list[np.ndarray]  # each HxWxC uint8/uint16 (sizes may differ before resizing)
    targets: np.ndarray  # float64 (regression) or int64 (classification)
    task: str  # "regression" or "classification"
    names: list[str]  # one per sample, for error messages and the manifest
    files: dict[str, str]  # source file -> sha256
    num_classes: int = 0
    target_name: str = "density"
    predefined_split: dict[str, np.ndarray] | None = None  # e.g. CIFAR's train/test
    warnings: list[str] = field(default_factory=list)
    source: str = ""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_image(path: Path) -> np.ndarray:
    """Read a PNG or TIFF (8/16-bit, grayscale or RGB) as HxWxC; raise DatasetError if bad."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    array = np.array(img, dtype=np.uint16) if img.mode != "I" else np.array(img)
                elif img.mode in ("L", "RGB"):
                    array = np.array(img)
                elif img.mode in ("RGBA", "P", "LA"):
                    array = np.array(img.convert("RGB"))
                else:
                    raise DatasetError(f"{path}: unsupported image mode {img.mode!r}")
    except DatasetError:
        raise
    except Exception as err:  # PIL/tifffile raise many types for truncated files
        raise DatasetError(
            f"{path}: unreadable or truncated image ({type(err).__name__}: {err}); "
            "re-export or remove the file and its row in density.csv"
        ) from None
    if array.dtype == np.int32 or array.dtype == np.int64:
        if array.min() < 0 or array.max() > 65535:
            raise DatasetError(f"{path}: pixel values outside 0..65535")
        array = array.astype(np.uint16)
    if array.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: pixel type {array.dtype} is not 8- or 16-bit unsigned")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise DatasetError(f"{path}: shape {array.shape} is neither grayscale nor RGB")
    return array


def read_microbead_folder(root: str | Path) -> RawDataset:
    """A folder of images plus `density.csv` with columns `filename,density`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: microbead folder not found; pass an existing folder "
                           "with --config microbead_dir=PATH")
    table = root / "density.csv"
    if not table.is_file():
        raise DatasetError(f"{table}: missing; the folder needs density.csv with columns "
                           "filename,density")
    with open(table, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["filename", "density"]:
            raise DatasetError(f"{table}: header must be exactly 'filename,density', got "
                               f"{header!r}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise DatasetError(f"{table}:{line_no}: expected 2 columns, got {len(row)}")
            name, value = row[0].strip(), row[1].strip()
            try:
                density = float(value)
            except ValueError:
                raise DatasetError(f"{table}:{line_no}: density {value!r} is not a number")\
                    from None
            if not math.isfinite(density) or density < 0:
                raise DatasetError(f"{table}:{line_no}: density {value!r} for {name} must be "
                                   "a finite number >= 0; fix or remove the row")
            rows.append((line_no, name, density))
    if not rows:
        raise DatasetError(f"{table}: no rows; add one row per image")
    seen: dict[str, int] = {}
    for line_no, name, _ in rows:
        if name in seen:
            raise DatasetError(f"{table}:{line_no}: duplicate filename {name!r} (first on line "
                               f"{seen[name]}); keep one row per image")
        seen[name] = line_no
    on_disk = {p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [name for _, name, _ in rows if name not in on_disk]
    if missing:
        raise DatasetError(f"{table}: {len(missing)} row(s) name images that do not exist, "
                           f"e.g. {missing[:3]}; add the images or remove the rows")
    unlabelled = sorted(on_disk - set(seen))
    if unlabelled:
        raise DatasetError(f"{root}: {len(unlabelled)} image(s) have no row in density.csv, e.g. "
                           f"{unlabelled[:3]}; add rows or move the images out")
    images, files, kinds = [], {"density.csv": sha256_file(table)}, {}
    content: dict[str, tuple[str, float]] = {}
    for _, name, density in rows:
        path = root / name
        array = read_image(path)
        kinds.setdefault((array.dtype.str, array.shape[2]), name)
        files[name] = sha256_file(path)
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        if digest in content and content[digest][1] != density:
            other = content[digest][0]
            raise DatasetError(f"{root}: {name} and {other} hold the same image but different "
                               f"densities ({density} vs {content[digest][1]}); fix the label")
        content.setdefault(digest, (name, density))
        images.append(array)
    if len(kinds) > 1:
        desc = {f"{np.dtype(k[0]).name}/{k[1]}ch": v for k, v in kinds.items()}
        raise DatasetError(f"{root}: images mix bit depths or channel counts {desc}; convert "
                           "them to one format")
    targets = np.array([d for _, _, d in rows], dtype=np.float64)
    return RawDataset(images=images, targets=targets, task="regression",
                      names=[n for _, n, _ in rows], files=files, target_name="density",
                      source=str(root))


# name -> reader(spec, location) ; `location` is the folder or root given in the config.
READERS: dict[str, Callable[[dict[str, Any], str | Path], RawDataset]] = {
    "microbeads": lambda spec, location: read_microbead_folder(location),
}


def read_dataset(spec: dict[str, Any], location: str | Path) -> RawDataset:
    name = spec["name"]
    if name not in READERS:
        raise DatasetError(f"dataset.name={name!r} has no reader; known: {sorted(READERS)}")
    return READERS[name](spec, location)
