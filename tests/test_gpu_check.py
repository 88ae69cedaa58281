"""tools/gpu_check.py, the script for a GPU machine, runs here: --help, the clear exit
without CUDA, and every section at toy sizes on the CPU (--dry-run)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

SCRIPT = REPO / "tools" / "gpu_check.py"


def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # a bare environment: the script must find src/ itself, without the installed package
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPSTUDY_DEVICE")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
    )


def test_help_names_every_section():
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("tests", "experiment", "sharing", "compile", "--dry-run"):
        assert word in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_without_cuda_it_says_so_and_exits_cleanly():
    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "--dry-run" in proc.stdout


@pytest.mark.slow
def test_dry_run_prints_every_number():
    proc = run("--dry-run", "--sections", "experiment,sharing,compile")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "experiment 32px: 2 epochs" in out and "study estimate 32px: 105 runs" in out
    assert "sharing k=1" in out and "sharing k=2" in out
    assert "compile eager" in out and "decision compile" in out or "compile compile: failed" in out
    assert "gpu_check: done" in out
