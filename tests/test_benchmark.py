"""The benchmark runs in a reduced form, prints a table of numbers and writes CSV + markdown.

Never asserts on timing: only that every measurement is there and is a positive number.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import subprocess
import sys

import pytest
from conftest import REPO

from hpstudy.study import load_study

sys.path.insert(0, str(REPO / "benchmarks"))
import benchmark  # noqa: E402 - benchmarks/benchmark.py, outside the runtime package

TINY = [
    "--quick",
    "--image-size",
    "16",
    "--n-images",
    "40",
    "--batch-size",
    "8",
    "--threads",
    "1",
    "--workers",
    "0,2",
]


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "benchmark.py"),
        *TINY,
        "--out",
        str(out),
        "--work-dir",
        str(tmp_path),
        *args,
    ]
    env = {**os.environ, "HPSTUDY_DEVICE": os.environ.get("HPSTUDY_DEVICE", "cpu")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def printed_rows(stdout: str) -> list[list[str]]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| section | case | metric | value |")
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]


def written_rows(folder) -> list[dict]:
    with open(folder / "benchmark-quick.csv") as fh:
        return list(csv.DictReader(fh))


def positive(value: str) -> bool:
    number = float(value)
    return math.isfinite(number) and number > 0


def test_data_train_loop_and_gpu_sections(tmp_path):
    proc = run_cli(tmp_path, "--sections", "data,train,loop,gpu")
    printed = printed_rows(proc.stdout)
    rows = written_rows(tmp_path / "bench")
    assert [[r["section"], r["case"], r["metric"], r["value"]] for r in rows] == [
        p[:4] for p in printed
    ]
    # the table is printed once: stderr has progress lines only, stdout one table
    assert proc.stdout.count("| section | case | metric | value |") == 1
    for r in rows:
        assert r["metric"] not in proc.stderr, f"{r['metric']} printed twice"
    md = (tmp_path / "bench" / "benchmark-quick.md").read_text()
    assert md.startswith("# hpstudy benchmark (quick)") and "| data | device |" in md
    found = {(r["section"], r["case"], r["metric"]): r["value"] for r in rows}
    for case in ("device", "dataloader_w0", "dataloader_w2"):
        assert positive(found["data", case, "data_only_images_per_s"])
        assert positive(found["train", case, "train_images_per_s"])
    for case in ("device_vs_dataloader_w0", "device_vs_dataloader_w2"):
        assert positive(found["data", case, "data_only_speedup"])
    for key in (
        ("loop", "ideal_step", "seconds_per_step"),
        ("loop", "trainer_loop", "seconds_per_step"),
        ("loop", "trainer_loop", "efficiency"),
    ):
        assert positive(found[key])
    # the efficiency is the median of the per-epoch ratios its note lists
    note = next(r["note"] for r in rows if r["metric"] == "efficiency")
    per_epoch = [float(v) for v in note.split("per epoch ")[1].split(";")[0].split(", ")]
    assert all(v > 0 for v in per_epoch)
    assert float(found["loop", "trainer_loop", "efficiency"]) == pytest.approx(
        statistics.median(per_epoch), rel=0.01
    )
    gpu = {k: v for k, v in found.items() if k[0] == "gpu"}
    if os.environ.get("HPSTUDY_DEVICE", "cpu") == "cpu":
        assert gpu == {("gpu", "all", "status"): "skipped: no CUDA device"}
    else:
        assert positive(gpu["gpu", "bottleneck_experiment", "train_time"])


@pytest.mark.slow
def test_overhead_and_dag_sections(tmp_path):
    proc = run_cli(tmp_path, "--sections", "overhead,dag", "--dag-sizes", "3,7")
    rows = written_rows(tmp_path / "bench")
    assert len(printed_rows(proc.stdout)) == len(rows)
    found = {(r["section"], r["case"], r["metric"]): r for r in rows}
    for metric in (
        "start_to_first_step",
        "train_script_total",
        "python_start",
        "import_torch",
        "load_prepared",
        "build_model",
        "count_flops",
    ):
        assert positive(found["overhead", "as_configured", metric]["value"]), metric
    assert (
        "hpstudy.train imports it: no"
        in found["overhead", "as_configured", "import_torchvision"]["note"]
    )
    for n in (3, 7):
        row = found["dag", f"{n}_experiments", "snakemake_dry_run"]
        assert positive(row["value"])
        # 1 seed: a train and an extract job per experiment, plus the shared jobs
        assert row["note"].startswith(f"{2 * n + 6} jobs")


def test_scale_study_has_the_requested_experiments(tmp_path):
    folder = benchmark.write_scale_study(tmp_path, 250)
    study = load_study(folder / "studies" / "scale250.yaml")
    ids = [e.id for e in study.experiments]
    assert len(ids) == len(set(ids)) == 250
    assert len(study.groups) == 3 and study.runs()[-1] == (ids[-1], 0)
    assert study.experiment(ids[123]).id == ids[123]


def test_cli_rejects_unknown_sections(tmp_path):
    with pytest.raises(SystemExit):
        benchmark.main(["--quick", "--sections", "data,warp", "--out", str(tmp_path)])
