"""What a failed job leaves to read: the exit status of the rule inside it, and the logs to
name in the failure message.

A job's Exit_status is that of the Snakemake process inside it (1 whenever a rule failed),
so the rule's own exit status - e.g. "out of memory" - is read from the job's PBS output,
where that Snakemake reports "Command '...' returned non-zero exit status N." (shell, script
and notebook rules alike).
"""

from __future__ import annotations

import glob
import itertools
import string
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

RULE_EXIT = "returned non-zero exit status "
TAIL_BYTES = 256 * 1024  # the error is at the end of the output; never read a huge file whole


def rule_exit_status(output: str | Path) -> int | None:
    """The exit status of the last failed command that Snakemake reported in a job's output,
    or None (no output file yet, or no such line: e.g. killed at walltime)."""
    try:
        with open(output, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    where = text.rfind(RULE_EXIT)
    if where < 0:
        return None
    digits = text[where + len(RULE_EXIT) :].split(".", 1)[0].strip()
    try:
        return int(digits)
    except ValueError:
        return None


def _namespace(props: dict[str, Any]) -> dict[str, Any]:
    """A job's properties (Snakemake's jobscript JSON) as format fields."""
    return {
        "rule": props.get("rule"),
        "jobid": props.get("jobid"),
        "wildcards": SimpleNamespace(**(props.get("wildcards") or {})),
        "params": SimpleNamespace(**(props.get("params") or {})),
        "resources": SimpleNamespace(**(props.get("resources") or {})),
    }


def expand_pattern(pattern: str, props: dict[str, Any]) -> list[str]:
    """``pattern`` formatted with one job's fields; a list-valued field gives one result per
    element (two lists: every combination). [] when the job lacks a field."""
    fields = _namespace(props)
    formatter = string.Formatter()
    names: dict[str, int] = {}  # field name -> position in a pattern of positional fields
    positional = []
    for literal, name, spec, conversion in formatter.parse(pattern):
        positional.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            index = names.setdefault(name, len(names))
            positional.append(
                "{" + str(index) + (f"!{conversion}" if conversion else "") + f":{spec}}}"
            )
    values = []
    for name in names:
        try:
            value, _ = formatter.get_field(name, (), fields)
        except (AttributeError, KeyError, IndexError, ValueError):
            return []
        values.append(value if isinstance(value, list) else [value])
    template = "".join(positional)
    return [template.format(*combination) for combination in itertools.product(*values)]


def failure_logs(patterns: str | None, jobs: Iterable[dict[str, Any]]) -> list[str]:
    """Existing files the ``failure_logs`` patterns name for these jobs (a group job: each of
    its jobs), in pattern order, each once."""
    found: dict[str, None] = {}
    for props in jobs:
        for pattern in (patterns or "").split():
            for path in expand_pattern(pattern, props):
                for match in sorted(glob.glob(path)) if glob.has_magic(path) else [path]:
                    if Path(match).is_file():
                        found[match] = None
    return list(found)
