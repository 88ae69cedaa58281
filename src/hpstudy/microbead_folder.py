"""A folder of microbead images and its `density.csv` (columns `filename,density`), the lab's
own data format, read into a RawDataset: every row names an image that exists, every image
has a row, all images share one format, and a wrong header, row or value is a DatasetError
naming the file, the line and the fix."""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np

from hpstudy.raw_data import IMAGE_SUFFIXES, DatasetError, RawDataset, read_image, sha256_file


def read_microbead_folder(root: str | Path) -> RawDataset:
    """A folder of images plus `density.csv` with columns `filename,density`: every row
    names an image that exists, every image has a row, and they are all of one format."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"{root}: microbead folder not found; pass an existing folder "
            "with --config microbead_dir=PATH"
        )
    table = root / "density.csv"
    if not table.is_file():
        raise DatasetError(
            f"{table}: missing; the folder needs density.csv with columns filename,density"
        )
    rows = _density_rows(table)
    _check_rows_match_images(root, table, rows)
    images, files = _read_labelled_images(root, table, rows)
    targets = np.array([d for _, _, d in rows], dtype=np.float64)
    return RawDataset(
        images=images,
        targets=targets,
        task="regression",
        names=[n for _, n, _ in rows],
        files=files,
        target_name="density",
        source=str(root),
    )


def _density_rows(table: Path) -> list[tuple[int, str, float]]:
    """density.csv as (line, filename, density) rows; a header, a row or a value that is
    wrong is a DatasetError naming the line and the fix."""
    with open(table, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        columns = [h.strip() for h in header or []]
        if columns != ["filename", "density"]:
            missing = [c for c in ("filename", "density") if c not in columns]
            extra = [c for c in columns if c not in ("filename", "density")]
            raise DatasetError(
                f"{table}: header must be exactly 'filename,density', got {header!r}"
                + (f"; missing column(s) {missing}" if missing else "")
                + (f"; extra column(s) {extra}" if extra else "")
                + "; fix the first line (and drop extra columns from every row)"
            )
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise DatasetError(
                    f"{table}:{line_no}: expected 2 columns (filename,density), "
                    f"got {len(row)}: {row!r}; fix the row"
                )
            name, value = row[0].strip(), row[1].strip()
            try:
                density = float(value)
            except ValueError:
                raise DatasetError(
                    f"{table}:{line_no}: density {value!r} is not a number"
                ) from None
            if not math.isfinite(density) or density < 0:
                raise DatasetError(
                    f"{table}:{line_no}: density {value!r} for {name} must be "
                    "a finite number >= 0; fix or remove the row"
                )
            rows.append((line_no, name, density))
    return rows


def _check_rows_match_images(root: Path, table: Path, rows: list[tuple[int, str, float]]) -> None:
    """One row per image: no duplicate rows, no row without its image, no image without a
    row."""
    if not rows:
        raise DatasetError(f"{table}: no rows; add one row per image")
    seen: dict[str, int] = {}
    for line_no, name, _ in rows:
        if name in seen:
            raise DatasetError(
                f"{table}:{line_no}: duplicate filename {name!r} (first on line "
                f"{seen[name]}); keep one row per image"
            )
        seen[name] = line_no
    on_disk = {p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [name for _, name, _ in rows if name not in on_disk]
    if missing:
        raise DatasetError(
            f"{table}: {len(missing)} row(s) name images that do not exist, "
            f"e.g. {missing[:3]}; add the images or remove the rows"
        )
    unlabelled = sorted(on_disk - set(seen))
    if unlabelled:
        raise DatasetError(
            f"{root}: {len(unlabelled)} image(s) have no row in density.csv, e.g. "
            f"{unlabelled[:3]}; add rows or move the images out"
        )


def _read_labelled_images(
    root: Path, table: Path, rows: list[tuple[int, str, float]]
) -> tuple[list[np.ndarray], dict[str, str]]:
    """The images in row order and the SHA-256 of every file; the same image under two
    densities, or images of several bit depths or channel counts, are a DatasetError."""
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
            raise DatasetError(
                f"{root}: {name} and {other} hold the same image but different "
                f"densities ({density} vs {content[digest][1]}); fix the label"
            )
        content.setdefault(digest, (name, density))
        images.append(array)
    if len(kinds) > 1:
        desc = {f"{np.dtype(k[0]).name}/{k[1]}ch": v for k, v in kinds.items()}
        raise DatasetError(
            f"{root}: images mix bit depths or channel counts {desc}; convert them to one format"
        )
    return images, files
