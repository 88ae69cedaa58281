"""A study's cost before it runs (hpstudy.cost, hpstudy.calibration) and the cluster walltimes made
from it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake_cmd
from snakemake_executor_plugin_pbs import ExecutorSettings
from snakemake_executor_plugin_pbs.submit import JobRequest, qsub_command, walltime

from hpstudy import calibration, cost
from hpstudy.study import load_study

QUICK = REPO / "config" / "studies" / "quick.yaml"


def fake_calibration(tmp_path: Path, seconds_per_sample: float = 0.01) -> cost.Calibration:
    """A calibration whose every shape costs `seconds_per_sample` per sample (no measuring)."""
    cal = cost.Calibration(device="cpu", threads=1, path=tmp_path / "calibration.json")
    study = load_study(QUICK)
    for exp in study.experiments:
        shape = cost.run_shape(exp.config, study.dataset)
        cal.entries[shape.key()] = {
            "seconds_per_step": seconds_per_sample * shape.batch_size,
            "flops_per_sample": 1e8,
        }
    cal.entries[calibration.STARTUP_KEY] = {"seconds": 5.0}
    return cal


def test_split_sizes_match_what_prepare_makes():
    # the quick study: 1948 generated images x 25 % = 487 -> 341 / 73 / 73 (its manifest)
    split = cost.dataset_split(load_study(QUICK).dataset, 1948)
    assert (split.train, split.val, split.test) == (341, 73, 73)
    cifar = cost.dataset_split({"name": "cifar10", "data_percentage": 10})
    assert (cifar.train, cifar.val, cifar.test) == (4500, 500, 1000)


def test_run_estimate_is_epochs_x_steps_x_step_time(tmp_path):
    cal = fake_calibration(tmp_path, seconds_per_sample=0.01)
    study = load_study(QUICK)
    exp = study.experiment("batch_size-bs16")
    est = cost.estimate_run(exp.config, study.dataset, cal, 1948)
    steps = 3 * -(-341 // 16)  # epochs x ceil(n_train / batch)
    assert est.train_s == pytest.approx(steps * 0.16)
    assert est.flops == pytest.approx(1e8 * 341 * 3)
    assert est.train_s < est.wall_s < est.train_s + 60


def test_report_per_group_and_total_and_long_warning(tmp_path):
    study = load_study(QUICK)
    cal = fake_calibration(tmp_path, seconds_per_sample=0.01)
    text = cost.report(study, cost.estimate_study(study, cal, 1948), cal)
    for group in study.groups:
        assert re.search(rf"^  {group}\s+\d+ ", text, re.M), text
    # experiments sharing a configuration are trained once: the total counts distinct runs
    runs = len(study.configs()) * len(study.seeds)
    assert runs < len(study.experiments) * len(study.seeds)
    assert re.search(rf"^  total \(distinct configs\)\s+{runs} ", text, re.M), text
    assert "WARNING" not in text
    slow = fake_calibration(tmp_path / "slow", seconds_per_sample=2.0)
    line = cost.one_line(study, slow, 1948)
    assert "WARNING" in line and "CPU-only" in line
    assert line.startswith(f"hpstudy: quick: {runs} runs")


def test_walltime_from_estimate_factor_attempt_and_limits():
    policy = cost.WalltimePolicy(factor=3, min_minutes=10, max_minutes=240)
    assert cost.walltime_minutes(600, 1, 1, policy) == 30  # 10 min x 3
    assert cost.walltime_minutes(600, 1, 2, policy) == 60  # a retry asks for more
    assert cost.walltime_minutes(600, 3, 1, policy) == 90  # a job training 3 seeds
    assert cost.walltime_minutes(10, 1, 1, policy) == 10  # at least the minimum
    assert cost.walltime_minutes(6000, 1, 3, policy) == 240  # never over the site's limit


def test_walltime_file_in_profiles_loads_and_rejects_typos(tmp_path):
    policy = cost.load_policy(REPO / "profiles" / "walltime.yaml")
    assert policy.factor >= 1 and policy.max_minutes
    bad = tmp_path / "walltime.yaml"
    bad.write_text("factr: 2\n")
    with pytest.raises(ValueError, match="factr"):
        cost.load_policy(bad)


def test_real_calibration_is_measured_once_and_cached(tmp_path):
    shape = cost.Shape("resnet_shallow", 1, 16, 1, 4, "regression")
    cal = cost.Calibration(device="cpu", threads=1, path=tmp_path / "c.json")
    first = cal.step(shape)
    assert first["seconds_per_step"] > 0 and first["flops_per_sample"] > 0
    assert cal.measured == [shape.key()]
    again = cost.Calibration(device="cpu", threads=1, path=tmp_path / "c.json")
    assert again.step(shape) == first and again.measured == []


def test_device_profile_is_used_and_scaled_by_flops(tmp_path):
    profile = tmp_path / "gpu.json"
    shape = cost.Shape("resnet_shallow", 1, 64, 1, 32, "regression")
    machine = "gpunode | NVIDIA H100 | cuda | 1 threads"
    profile.write_text(
        json.dumps(
            {
                "format": calibration.FORMAT,
                "flops": {},
                "machines": {
                    machine: {shape.key(): {"seconds_per_step": 0.004, "flops_per_sample": 1e9}}
                },
            }
        )
    )
    cal = cost.Calibration(device_profile=profile)
    assert cal.device == "cuda" and cal.step(shape)["seconds_per_step"] == 0.004
    bigger = cost.Shape("resnet_shallow", 1, 64, 1, 64, "regression")  # not in the profile
    scaled = cal.step(bigger)
    assert scaled["from_flop_rate"] and scaled["seconds_per_step"] == pytest.approx(
        0.004 * 2 * scaled["flops_per_sample"] / 1e9
    )
    assert cal.measured == []  # a device profile is never measured here


def test_study_checker_prints_the_cost(tmp_path):
    env = {**os.environ, "HPSTUDY_CACHE_DIR": str(tmp_path)}
    study = tmp_path / "s.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "seeds": 2,
                "dataset": {"name": "microbeads", "image_size": 16, "data_percentage": 5},
                "base": {"epochs": 2, "batch_size": 8},
                "groups": {"g": {"grid": {"lr": [1e-3, 1e-2]}}},
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "hpstudy", "check", str(study)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "s: cost estimate on" in proc.stdout
    assert re.search(r"^  g\s+4\s+\S+ \S*FLOP", proc.stdout, re.M), proc.stdout
    assert (tmp_path / "calibration.json").is_file()


@pytest.mark.slow
def test_pbs_train_jobs_of_the_quick_study_request_walltimes_from_their_estimates(tmp_path):
    """`snakemake -n --profile profiles/pbs`: every train job's runtime is its run's estimate
    x factor (profiles/walltime.yaml; here a large factor and no minimum, so that the quick
    study's runs of seconds get distinct whole minutes), and the qsub line built from that
    job carries it as walltime."""
    policy_file = tmp_path / "walltime.yaml"
    policy_file.write_text("factor: 40\nmin_minutes: 0\nmax_minutes: 2880\n")
    env = {**os.environ, "HPSTUDY_WALLTIME": str(policy_file)}
    proc = subprocess.run(
        snakemake_cmd(
            "-n",
            "--profile",
            "profiles/pbs",
            "--config",
            "study=quick",
            f"results_dir={tmp_path}/results",
            f"reports_dir={tmp_path}/reports",
        ),
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=REPO,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    quick = load_study(REPO / "config/studies/quick.yaml")
    assert f"hpstudy: quick: {len(quick.configs()) * len(quick.seeds)} runs" in out
    jobs = re.findall(
        r"rule train:.*?wildcards: study=quick, cfg=(\S+)\n\s*"
        r"(?:\s*threads: \d+\n)?\s*resources: (.*?)\n",
        out,
        re.S,
    )
    assert len(jobs) == len(quick.configs()), out[-3000:]  # one job per configuration
    threads = yaml.safe_load((REPO / "profiles/pbs/config.v8+.yaml").read_text())["set-threads"][
        "train"
    ]
    cal = cost.Calibration(threads=1)  # the calibration the dry run made (cached)
    policy = cost.load_policy(policy_file)
    seen = set()
    for cfg_id, resources in jobs:
        runtime = int(re.search(r"runtime=(\d+)", resources).group(1))
        config = quick.configs()[cfg_id][0].config
        est = cost.estimate_run(config, quick.dataset, cal, 1948)
        # the job trains every seed of its configuration
        assert runtime == cost.walltime_minutes(est.wall_s, len(quick.seeds), 1, policy), (
            cfg_id,
            resources,
        )
        request = JobRequest(
            rule="train",
            threads=threads,
            wildcards={"study": "quick", "cfg": cfg_id},
            resources={"mem_mb": 16000, "runtime": runtime, "ngpus": 1},
        )
        line = qsub_command(request, ExecutorSettings(), "job.sh", Path("/w/o.out"))
        assert f"walltime={walltime(runtime)}" in line
        seen.add(runtime)
    assert len(seen) > 1  # the walltimes follow the runs, not one fixed number


@pytest.mark.slow
def test_runtime_override_without_attempt_warns(tmp_path):
    """`--set-resources train:runtime=480` replaces the estimate x attempt: retries would get
    no more time, so the workflow says so at the start; with `attempt` it does not."""

    def dry_run(value):
        return subprocess.run(
            snakemake_cmd(
                "-n",
                "--cores",
                "1",
                "--config",
                f"results_dir={tmp_path}/r",
                f"reports_dir={tmp_path}/p",
                "--set-resources",
                f"train:runtime={value}",
            ),
            capture_output=True,
            text=True,
            timeout=900,
            cwd=REPO,
            check=False,
        )

    proc = dry_run("480")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hpstudy: warning: --set-resources train:runtime=480 replaces" in proc.stderr
    proc = dry_run("120*attempt")
    assert proc.returncode == 0 and "hpstudy: warning" not in proc.stderr
