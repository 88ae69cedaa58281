"""A raw dataset in memory, and reading the files it comes from: `RawDataset` (images,
targets, the SHA-256 of every source file), `DatasetError` (names the file and the fix),
`read_image` for PNG and TIFF, `sha256_file`. The readers of hpstudy.datasets and
hpstudy.microbead_folder build on these."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

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
