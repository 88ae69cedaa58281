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
    for word in ("tests", "experiment", "seeds", "sharing", "compile", "--dry-run", "--budget"):
        assert word in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_without_cuda_it_says_so_and_exits_cleanly():
    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "--dry-run" in proc.stdout


@pytest.mark.slow
def test_dry_run_prints_every_number():
    proc = run("--dry-run", "--sections", "experiment,seeds,compile,sharing")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "experiment 32px: 2 epochs" in out and "study estimate 32px: 105 runs" in out
    for mode in ("one run | 1 | 1 |", "fused | 2 | 2 |", "processes | 2 | 2 |"):
        assert f"| cpu | 32 | {mode}" in out, mode
    assert "| cpu | 32 | 2 processes x fused | 2 | 4 |" in out
    assert "study 32px: 105 runs of 50 epochs as" in out and "decision 32px: fuse_seeds:" in out
    assert "sharing k=1" in out and "sharing k=2" in out
    assert "compile eager" in out and "decision compile" in out or "compile compile: failed" in out
    assert "gpu_check: done" in out


def test_the_seeds_decision_takes_the_fastest_way_the_study_allows(capsys):
    """Fused rows count only at the study's seeds per configuration (3): 10 fused seeds would
    be fastest, but a 3-seed study cannot fuse 10."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)

    def row(mode, k, runs, rate):
        return {"mode": mode, "k": k, "runs": runs, "projected_runs_per_min": rate}

    rows = [
        row("one run", 1, 1, 6.0),
        row("processes", 3, 3, 12.0),
        row("fused", 3, 3, 15.0),
        row("fused", 10, 10, 60.0),
        row("2 processes x fused", 3, 6, 21.0),
        row("4 processes x fused", 3, 12, 18.0),
    ]
    for r in rows:
        r["x_one_run"] = r["projected_runs_per_min"] / 6.0
    gpu_check.study_decision(rows, gpu_check.FULL, 128)
    out = capsys.readouterr().out
    assert "fused (k=10)" not in out
    assert "study 128px: 105 runs of 50 epochs as 2 processes x fused (k=3): 5.0 min" in out
    assert "study 128px: 105 runs of 50 epochs as one run (k=1): 17.5 min projected (misses" in out
    assert "decision 128px: fuse_seeds: true, HPSTUDY_JOBS_PER_GPU=2" in out
