"""Shared fixtures: a tiny generated microbead dataset, prepared once per test session; and
the line that says which tests the default run (pyproject's `-m`) left out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HPSTUDY_DEVICE", "cpu")  # tests are CPU tests unless marked gpu
# Some machines (this project's CI among them) set PYTHONDONTWRITEBYTECODE: then every snakemake
# and job process the tests start recompiles ~12,000 files of site-packages (7 of a 14 s dry
# run). Let the test processes cache their bytecode; it changes nothing they compute.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def microbead_dir(tmp_path_factory) -> Path:
    from hpstudy.microbeads import generate

    out = tmp_path_factory.mktemp("microbeads")
    return generate(out / "raw", n_images=80, size=64, seed=3, progress=False)


@pytest.fixture(scope="session")
def prepared(microbead_dir, tmp_path_factory) -> Path:
    """80 generated images at 32 px: 56 train / 12 val / 12 test."""
    from hpstudy.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    spec = {
        "name": "microbeads",
        "image_size": 32,
        "split": {"method": "random", "train": 0.7, "val": 0.15, "test": 0.15, "seed": 1},
    }
    prepare(spec, microbead_dir, out / "prepared.pt", out / "manifest.json")
    return out / "prepared.pt"


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> dict:
    """tests/test_report.py's synthetic study (6 groups, 3 seeds, known effects, a diverged
    run, every run with its attempt record) through the real extract, aggregate and report
    code: results/, report.md/.html and figures/, built once for test_report, test_whole_study
    and test_report_browser. `overlaps`: the FigureOverlapWarnings drawing it raised."""
    import warnings

    from test_report import DIVERGED, LEVELS, STUDY, build_study

    from hpstudy.figures import FigureOverlapWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FigureOverlapWarning)
        paths = build_study(tmp_path_factory.mktemp("synth"), STUDY, LEVELS, diverged=DIVERGED)
    paths["overlaps"] = [str(w.message) for w in caught if w.category is FigureOverlapWarning]
    return paths


def snakemake_cmd(*args: str) -> list[str]:
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    return [exe, "--snakefile", str(REPO / "Snakefile"), *args]


def run_snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    """Run the real workflow in `workdir` with the config file written there."""
    cmd = snakemake_cmd(
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def write_workdir(workdir: Path, study_yaml: str, study: str = "tiny", **config) -> Path:
    """A work folder with config.yaml and studies/<study>.yaml for a workflow run."""
    import yaml

    (workdir / "studies").mkdir(parents=True, exist_ok=True)
    (workdir / "studies" / f"{study}.yaml").write_text(study_yaml)
    values = {
        "study": study,
        "studies_dir": str(workdir / "studies"),
        "results_dir": str(workdir / "results"),
        "reports_dir": str(workdir / "reports"),
        "synthetic": {"n_images": 60, "image_size": 64, "seed": 0},
    }
    values.update(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(values))
    return workdir


def _default_markers(config) -> str | None:
    """The `-m` expression of pyproject's addopts (the default run's selection)."""
    args = config.getini("addopts")
    return next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-m"), None)


@pytest.hookimpl(trylast=True)  # after the durations table, just above the counts
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After the default run: how many tests it left out, and the commands that run them."""
    left_out = len(terminalreporter.stats.get("deselected", []))
    chosen = config.option.markexpr != _default_markers(config) or config.option.keyword
    if not left_out or chosen:  # the caller picked the tests: nothing to explain
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", "not run by default")
    write(f"{left_out} slow, live-cluster (slurm, pbs) and GPU tests were left out. Run them with:")
    write('  uv run pytest -m "slow or slurm or pbs"   # .ci/run runs these after the fast suite')
    write("  uv run pytest -m gpu                      # on a machine with CUDA")
    write('  uv run pytest -m ""                       # everything')
