"""Atomic file writes: write to a temporary file beside the target, fsync, then os.replace.

A killed job or a full disk therefore never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Keys keep their order (a study's groups are listed as the study file lists them)."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=_jsonable)
    write_text(path, text + "\n")


def write_csv(path: str | Path, frame) -> None:
    # compression follows the target's name (the temporary file's name would say none)
    compression = "gzip" if str(path).endswith(".gz") else None
    with atomic_path(path) as tmp:
        frame.to_csv(
            tmp,
            index=False,
            sep="\t" if str(path).endswith(".tsv") else ",",
            compression=compression,
        )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
