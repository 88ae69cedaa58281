"""Damaged results are named: checksums of finished seeds, and reads that say which file.

A seed's files are sealed when it finishes (`seal`: `checksums.json` beside them, each
file's SHA-256, size and modification time) and checked before they are reused or read
(`damaged`); the workflow's start-up check (workflow/rules/common.smk) checks every published
seed and reruns the train job of a damaged one, which republishes the seed from its kept
copy or, when that is damaged too, trains it again. `read_json` and `read_csv` turn a parse
error into a `DamagedFile` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hpstudy.atomic import write_json
from hpstudy.logs import console

MANIFEST = "checksums.json"
FORMAT = "hpstudy-checksums/1"
REMAKE = "delete it and rerun snakemake to remake it"


class DamagedFile(ValueError):
    """A results file is unreadable, truncated or differs from its checksum."""


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def seal(folder: str | Path, names: Iterable[str], expected: dict[str, str] | None = None):
    """Write `folder/checksums.json` for the files `names` (those that exist); `expected`
    (name -> SHA-256, another copy's) must match, else the copy is a DamagedFile.
    Returns name -> SHA-256."""
    folder = Path(folder)
    files, sums = {}, {}
    for name in names:
        path = folder / name
        if not path.is_file():
            continue
        digest = sha256(path)
        if expected is not None and expected.get(name) != digest:
            raise DamagedFile(f"{path}: the copy differs from its source ({digest[:12]})")
        stat = path.stat()
        files[name] = {"sha256": digest, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        sums[name] = digest
    write_json(folder / MANIFEST, {"format": FORMAT, "files": files})
    return sums


def sealed(folder: str | Path) -> dict[str, str] | None:
    """name -> SHA-256 of a sealed folder; None when it has no (readable) checksums."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
        return {name: entry["sha256"] for name, entry in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def damaged(folder: str | Path, full: bool = False) -> list[str]:
    """What is wrong with a sealed folder, one line per file ([] when intact, or when it was
    never sealed). A file whose size and modification time are as sealed is taken as
    intact unless `full`; any other is hashed."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return []
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{manifest_path}: unreadable checksums ({type(err).__name__})"]
    problems = []
    for name, entry in entries.items():
        path = folder / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            problems.append(f"{path}: missing")
            continue
        if stat.st_size != entry["bytes"]:
            problems.append(
                f"{path}: {stat.st_size:,} bytes where {entry['bytes']:,} were sealed "
                "(truncated or overwritten)"
            )
        elif (full or stat.st_mtime_ns != entry["mtime_ns"]) and sha256(path) != entry["sha256"]:
            problems.append(f"{path}: content differs from its checksum ({MANIFEST})")
    return problems


def damaged_seeds(runs_dir: str | Path, seeds: Iterable[int] | None = None) -> list[str]:
    """What is wrong with a train job's published folder (`runs/{config}/seed{N}/`): seeds
    missing from it (of `seeds`, when known) and damaged files, one line each."""
    runs_dir = Path(runs_dir)
    problems = [
        f"{runs_dir / f'seed{n}'}: not there (deleted, or a seed added since it was published)"
        for n in seeds or ()
        if not (runs_dir / f"seed{n}").is_dir()
    ]
    for seed_dir in sorted(runs_dir.glob("seed*")):
        problems += damaged(seed_dir)
    return problems


def read_json(path: str | Path, fix: str = REMAKE) -> Any:
    """A JSON file; a parse error names the file and the fix."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedFile(f"{path}: not valid JSON ({err}); the file is damaged: {fix}") from None


def read_csv(path: str | Path, fix: str = REMAKE, **kwargs):
    """A CSV (or gzipped CSV) table as a DataFrame; an empty file is an empty frame, a
    damaged one a DamagedFile naming the file and the fix."""
    import zlib

    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, zlib.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DamagedFile(
            f"{path}: not a readable table ({type(err).__name__}: {err}); the file is "
            f"damaged: {fix}"
        ) from None


@contextlib.contextmanager
def exit_on_damage() -> Iterator[None]:
    """For a rule's script: a DamagedFile ends the job with its message (the file and the
    fix) on one line and exit status 2, not a traceback."""
    try:
        yield
    except DamagedFile as err:
        print(f"hpstudy: {err}", file=sys.stderr, flush=True)
        console(f"hpstudy: {err}")  # the terminal too, not only the job's log
        raise SystemExit(2) from None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a checkpoint cannot be read, from its zip directory alone (cheap: a truncated
    file has none); None when it looks whole. torch.load says the rest when it resumes."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"{type(err).__name__}: {err}"
    return None
