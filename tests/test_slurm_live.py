"""The quick study through profiles/slurm on a live Slurm cluster (.ci/slurm-up.sh starts one).

Skipped where `sbatch` is absent or no node is up. The workflow runs in a temporary copy of
the repository, with a copy of the profile whose per-job CPU and memory requests are shrunk to
fit the node (a CI node has 2 cores); everything else - executor, status command, GPU request,
retries - is the profile as users run it.

Measured on a 2-core, 24 GB machine shared with other work: .ci/slurm-up.sh 30 s from scratch
(apt-get included), 1 s when the cluster is up; this test 14 min (22 sbatch jobs:
generate_microbeads, prepare and 20 train jobs, two at a time, on the small data set).
HPSTUDY_SLURM_TEST_STUDY picks another study, HPSTUDY_SLURM_TEST_FULL_DATA=1 the configured
data size, HPSTUDY_SLURM_TEST_TIMEOUT the limit in seconds (default 1500).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm" / "config.v8+.yaml"
STUDY = os.environ.get("HPSTUDY_SLURM_TEST_STUDY", "quick")
TIMEOUT_S = int(os.environ.get("HPSTUDY_SLURM_TEST_TIMEOUT", "1500"))
# A small generated microbead set keeps CI short; the experiments are those of the study.
SMALL_DATA = {"synthetic": {"n_images": 400, "image_size": 64, "seed": 0}}
FULL_DATA = os.environ.get("HPSTUDY_SLURM_TEST_FULL_DATA") == "1"


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def live_node() -> dict[str, str] | None:
    """The first usable node of the default partition, as `scontrol show node` fields."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return None
    try:
        res = _run(["sinfo", "-h", "-N", "-o", "%N %T"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    usable = [
        line.split()[0]
        for line in res.stdout.splitlines()
        if res.returncode == 0 and line.split()[1].rstrip("*") in ("idle", "mixed", "allocated")
    ]
    if not usable:
        return None
    show = _run(["scontrol", "show", "node", "-o", usable[0]])
    return dict(re.findall(r"(\w+)=(\S+)", show.stdout))


@pytest.fixture(scope="module")
def node():
    info = live_node()
    if info is None:
        pytest.skip("no live Slurm cluster (sbatch absent or no idle node); see .ci/slurm-up.sh")
    return info


def fitted_profile(node: dict[str, str], dest: Path) -> Path:
    """profiles/slurm with CPU and memory requests shrunk to what one node has."""
    profile = yaml.safe_load(PROFILE.read_text())
    cpus = int(node.get("CPUTot", "1"))
    mem_mb = int(node.get("RealMemory", "2000"))
    has_gpu = "gpu:" in node.get("Gres", "")
    per_job_mem = max(500, mem_mb // (2 * cpus))
    for rule in profile.get("set-threads", {}):
        profile["set-threads"][rule] = 1
    for res in [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]:
        if "mem_mb" in res:
            res["mem_mb"] = min(int(res["mem_mb"]), per_job_mem)
        if not has_gpu:
            for gpu_key in ("gpu", "gpu_model", "gres"):
                res.pop(gpu_key, None)
    profile["slurm-init-seconds-before-status-checks"] = 5  # quicker turns in CI
    dest.mkdir(parents=True)
    (dest / "config.v8+.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def test_fitted_profile_keeps_the_profile_settings(tmp_path):
    node = {"CPUTot": "2", "RealMemory": "8000", "Gres": "gpu:1"}
    got = yaml.safe_load((fitted_profile(node, tmp_path / "p") / "config.v8+.yaml").read_text())
    orig = yaml.safe_load(PROFILE.read_text())
    assert got["executor"] == "slurm" and got["slurm-status-command"] == "squeue"
    assert got["set-resources"]["train"]["gpu"] == orig["set-resources"]["train"]["gpu"]
    # the train walltime comes from the rule (the estimate), not from the profile
    assert "runtime" not in got["set-resources"]["train"]
    assert "runtime" not in orig["set-resources"]["train"]
    assert got["set-resources"]["train"]["mem_mb"] == 2000
    assert got["set-threads"]["train"] == 1


@pytest.mark.slurm
@pytest.mark.slow
def test_quick_study_through_slurm_profile(node, tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    profile = fitted_profile(node, tmp_path / "profile")
    small = tmp_path / "small-data.yaml"
    small.write_text(yaml.safe_dump(SMALL_DATA))

    # as users run it: Snakemake from the project's .venv (bin first on PATH, as `uv run` does)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SLURM_JOB_ID", None)
    cmd = [
        sys.executable, "-m", "snakemake", "--profile", str(profile),
        *([] if FULL_DATA else ["--configfile", str(small)]), "--config", f"study={STUDY}",
    ]  # fmt: skip
    res = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]

    # every non-local job went through sbatch (Snakemake prints `rule X:` for those and
    # `localrule X:` for the bookkeeping rules), training included
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", log)
    remote = re.findall(r"^rule (\w+):", log, re.M)
    assert "train" in remote, log[-3000:]
    assert len(submitted) == len(remote), (len(submitted), len(remote), log[-3000:])
    report = work / "reports" / STUDY / "report.html"
    assert report.is_file() and report.stat().st_size > 0, sorted(work.rglob("report*"))
    assert (work / "reports" / STUDY / "report.md").is_file()
    # no training job ran on the submit host
    assert not re.search(r"^localrule train:", log, re.M)
