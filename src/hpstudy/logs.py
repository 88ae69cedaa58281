"""Send a job's stdout and stderr (Python and C level) to its Snakemake log file, and say
what must not hide there (`console`) on the terminal too."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

_CONSOLE: list[int] = []  # the stderr each active redirect_to replaced, innermost last


def console(message: str) -> None:
    """While stderr goes to a log (redirect_to), also write `message` to the console it
    replaced (Snakemake's terminal, or a cluster job's output file): for what a user must
    see without opening the log. Log it as usual as well; without a redirect it does nothing
    (stderr is the console already)."""
    if _CONSOLE:
        os.write(_CONSOLE[0], (message + "\n").encode())


@contextlib.contextmanager
def redirect_to(path: str | Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        _CONSOLE.append(saved[1])
        try:
            yield
        finally:
            _CONSOLE.pop()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
