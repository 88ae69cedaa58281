"""Files a person or a monitoring tool can read while a workflow runs.

``.snakemake/pbs/jobs.jsonl``   one line per qsub: job id, name, rule, wildcards, attempt,
                                 memory asked, output file, submission time, the qsub line
``.snakemake/pbs/status.json``  the last verdict of every job of this run:
                                 {"time": t, "live": {id: [status, reason]}, "final": {...}}
``<logdir>/status.log``          one line per failed job: time, job, reason, logs
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATE_DIR = Path(".snakemake") / "pbs"


class Records:
    def __init__(self, logdir: Path, state_dir: Path = STATE_DIR):
        self.logdir, self.state_dir = Path(logdir), Path(state_dir)
        self.board: dict[str, Any] = {"time": 0.0, "live": {}, "final": {}}

    def submitted(self, record: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "jobs.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def verdicts(self, live: dict[str, list[str]], final: dict[str, list[str]]) -> None:
        """This status check's answers (live replaces the last ones; final accumulates)."""
        self.board["time"] = time.time()
        self.board["live"] = live
        self.board["final"].update(final)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / "status.json.tmp"
        tmp.write_text(json.dumps(self.board))
        os.replace(tmp, self.state_dir / "status.json")  # readers never see half a file

    def failed(self, line: str) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.logdir / "status.log", "a") as fh:
            fh.write(f"{stamp}\t{line}\n")
