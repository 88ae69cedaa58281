"""Faults during a study (issue 7): divergence, out-of-memory, a full disk, a killed job and
runs that fail. Each must be recorded or refused so that nothing looks complete that is not,
and the study's report says what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake, snakemake_cmd

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SPLIT = {"method": "random", "train": 0.6, "val": 0.2, "test": 0.2}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """20 generated 16x16 microbead images, prepared (12 train / 4 val / 4 test)."""
    from hpstudy.microbeads import generate
    from hpstudy.prepare import prepare

    root = tmp_path_factory.mktemp("data")
    generate(root / "raw", 20, 16, seed=1, progress=False)
    prepare(
        {"name": "microbeads", "split": SPLIT},
        root / "raw",
        root / "prepared.pt",
        root / "manifest.json",
    )
    return root / "prepared.pt"


def _train(tmp_path: Path, prepared: Path, **knobs):
    from hpstudy.config import TrainConfig
    from hpstudy.train import run

    cfg = TrainConfig.from_dict({"epochs": 3, "batch_size": 4, "diagnostics_every": 0, **knobs})
    out, checkpoint = tmp_path / "run", tmp_path / "checkpoints" / "seed0.pt"
    lines: list[str] = []
    metrics = run(cfg, prepared, out, checkpoint, log=lines.append)
    return metrics, out, checkpoint, lines


# -- divergence ------------------------------------------------------------------------------
def test_nan_divergence_is_recorded_with_its_epoch(tmp_path, prepared):
    """A huge learning rate (lr up to 10 is allowed for exactly this) drives the loss to
    inf/NaN: the run stops, and is recorded as diverged with the epoch; the same run with a
    sane learning rate finishes normally (so the divergence is the lr's doing)."""
    metrics, out, checkpoint, lines = _train(
        tmp_path / "bad", prepared, optimizer="sgd", lr=10.0, momentum=0.9
    )
    assert metrics["status"] == "diverged"
    assert metrics["diverged_epoch"] == 1
    assert metrics["epochs_run"] == 0 and "test_r2" not in metrics
    assert any("at epoch 1" in line and line.endswith("diverged") for line in lines), lines
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["diverged_epoch"] == 1
    assert not checkpoint.exists()  # a finished (diverged) run keeps no checkpoint

    metrics, *_ = _train(
        tmp_path / "good", prepared, optimizer="sgd", lr=1e-3, momentum=0.9, epochs=2
    )
    assert metrics["status"] == "ok" and metrics["diverged_epoch"] is None
    assert metrics["epochs_run"] == 2


# -- out of memory ---------------------------------------------------------------------------
# The child caps its own address space 1.5 GiB above what it uses once torch is loaded, so
# the 1024x1024 forward pass of resnet18_imagenet fails in the real CPU allocator.
OOM_CHILD = """
import re, resource, runpy, sys
import torch
size = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + (3 << 29), resource.RLIM_INFINITY))
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path(sys.argv.pop(1), run_name="__main__")
"""


def _oom_run(tmp_path: Path, prepared: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    cfg = tmp_path / "oom.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": "resnet18_imagenet",
                "upsample_size": 1024,
                "batch_size": 12,
                "epochs": 1,
                "seed": 1,
            }
        )
    )
    runs_dir = tmp_path / "results/s/runs/0123456789"
    keep_dir = tmp_path / "results/s/checkpoints/0123456789"
    run_dir, checkpoint = runs_dir / "seed1", keep_dir / "seed1.pt"
    env = {**os.environ, "HPSTUDY_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run(
        [
            PYTHON,
            "-c",
            OOM_CHILD,
            str(REPO / "workflow/scripts/train.py"),
            str(cfg),
            str(prepared),
            str(runs_dir),
            str(keep_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    return proc, run_dir, checkpoint


@pytest.mark.slow
def test_out_of_memory_fails_the_run_and_keeps_the_reason(tmp_path, prepared):
    from hpstudy.failures import EXIT_OUT_OF_MEMORY, failure_note_path

    proc, run_dir, checkpoint = _oom_run(tmp_path, prepared)
    assert proc.returncode == EXIT_OUT_OF_MEMORY, proc.stderr[-3000:]
    assert "hpstudy: run failed: out of memory" in proc.stderr
    assert "give the job more memory" in proc.stderr
    assert not (run_dir / "metrics.json").exists()  # a failed run never looks complete
    note = json.loads(failure_note_path(checkpoint).read_text())
    assert note["status"] == "failed" and note["out_of_memory"] is True
    assert note["reason"].startswith("out of memory ")
    assert "CPU: peak resident" in note["reason"]


# -- partial studies ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, prepared) -> Path:
    """One finished 1-epoch run (trained once for the tests that aggregate it)."""
    from hpstudy.config import TrainConfig
    from hpstudy.train import run

    root = tmp_path_factory.mktemp("finished")
    cfg = TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "lr": 1e-3, "diagnostics_every": 0})
    run(cfg, prepared, root / "run", root / "seed0.pt", log=lambda m: None)
    return root / "run"


def _aggregate_fixture(tmp_path: Path, finished_run: Path):
    """A 1-experiment x 2-seed study whose seed 0 finished and whose seed 1 failed with a
    failure note (as a failed training run leaves it)."""
    import shutil

    from hpstudy.extract import write_extract
    from hpstudy.failures import failure_note_path
    from hpstudy.study import load_study

    studies = tmp_path / "studies"
    studies.mkdir()
    study_file = studies / "s.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "seeds": 2,
                "dataset": {"name": "microbeads", "split": SPLIT},
                "base": {"epochs": 1, "batch_size": 4, "diagnostics_every": 0},
                "groups": {"g": {"grid": {"lr": [1e-3]}}},
            }
        )
    )
    (cfg_id,) = load_study(study_file).configs()
    study_dir = tmp_path / "results" / "s"
    shutil.copytree(finished_run, study_dir / "runs" / cfg_id / "seed0")
    record = study_dir / "records" / f"{cfg_id}.json"
    write_extract(
        study_dir / "runs" / cfg_id,
        cfg_id,
        [0],
        None,
        record,
        record.with_suffix(".curves.csv"),
        record.with_suffix(".layers.csv.gz"),
    )
    note = failure_note_path(study_dir / f"checkpoints/{cfg_id}/seed1.pt")
    note.parent.mkdir(parents=True)
    note.write_text(json.dumps({"status": "failed", "reason": "out of memory at epoch 2 (test)"}))
    outputs = {
        "out_summary": study_dir / "summary.csv",
        "out_study": study_dir / "study.json",
        "out_groups": study_dir / "groups",
        "out_stats": study_dir / "stats.json",
    }
    return study_file, [record], outputs


def test_partial_study_fails_by_default_naming_the_missing_runs(tmp_path, prepared, finished_run):
    from hpstudy.aggregate import MissingRunsError, aggregate_study

    study_file, records, outputs = _aggregate_fixture(tmp_path, finished_run)
    with pytest.raises(MissingRunsError) as err:
        aggregate_study(study_file, prepared, records, **outputs)
    message = str(err.value)
    assert "study s: 1 of 2 runs have no results: ['g-lr1e-3/seed1']" in message
    assert "--config allow_partial=true" in message
    assert "g-lr1e-3/seed1: out of memory at epoch 2 (test)" in message
    assert not any(Path(p).exists() for p in outputs.values())  # nothing written


def test_partial_study_with_allow_partial_is_marked_partial(tmp_path, prepared, finished_run):
    from hpstudy.aggregate import aggregate_study

    study_file, records, outputs = _aggregate_fixture(tmp_path, finished_run)
    summary = aggregate_study(study_file, prepared, records, allow_partial=True, **outputs)
    assert list(summary["seed"]) == [0]
    doc = json.loads(Path(outputs["out_study"]).read_text())
    assert doc["partial"] is True
    assert doc["missing_runs"] == ["g-lr1e-3/seed1"]
    assert doc["missing_reasons"] == {"g-lr1e-3/seed1": "out of memory at epoch 2 (test)"}


# -- disk full -------------------------------------------------------------------------------
# RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as a full disk fails them with
# ENOSPC: the writer sees an OSError part-way through the file.
DISK_FULL_CHILD = """
import json, resource, signal, sys
from hpstudy.atomic import write_json
from hpstudy.prepare import prepare
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
out, raw = sys.argv[1], sys.argv[2]
errors = {}
try:
    write_json(out + "/metrics.json", {"status": "ok", "history": list(range(5000))})
except OSError as err:
    errors["metrics"] = err.strerror
try:
    prepare({"name": "microbeads", "split": json.loads(sys.argv[3])}, raw,
            out + "/prepared.pt", out + "/manifest.json")
except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
    errors["prepared"] = type(err).__name__
print(json.dumps(errors))
"""


@pytest.mark.slow
def test_disk_full_leaves_old_results_or_nothing(tmp_path, prepared):
    """A write that fails part-way never leaves a truncated file under the final name: the
    complete old file stays, or there is none; no temporary file is left behind."""
    out = tmp_path / "out"
    out.mkdir()
    old = b'{"status": "ok", "complete": true}\n'
    (out / "metrics.json").write_bytes(old)
    raw = prepared.parent / "raw"
    proc = subprocess.run(
        [PYTHON, "-c", DISK_FULL_CHILD, str(out), str(raw), json.dumps(SPLIT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert errors == {"metrics": "File too large", "prepared": "RuntimeError"}
    assert (out / "metrics.json").read_bytes() == old
    assert files_under(out) == ["metrics.json"]


# -- the workflow: a study goes on past diverged and failed runs --------------------------------
def _snakemake(folder: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_snakemake(folder, "--cores", "2", *args, check=False, timeout=timeout)


def _workflow(tmp_path: Path, groups: dict, epochs: int = 2) -> Path:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "f.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "f",
                "seeds": 1,
                "dataset": {"name": "microbeads", "split": SPLIT},
                "base": {"epochs": epochs, "batch_size": 4, "diagnostics_every": 0},
                "groups": groups,
            },
            sort_keys=False,  # experiment labels follow the order of the overrides
        )
    )
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "study": "f",
                "studies_dir": str(tmp_path / "studies"),
                "results_dir": str(tmp_path / "results"),
                "reports_dir": str(tmp_path / "reports"),
                "synthetic": {"n_images": 20, "image_size": 16, "seed": 0},
            }
        )
    )
    return tmp_path


def _config_ids(folder: Path) -> dict[str, str]:
    from hpstudy.study import load_study

    return {e.id: e.config_id for e in load_study(folder / "studies/f.yaml").experiments}


@pytest.mark.slow
def test_study_goes_on_past_divergence_and_failure_and_reports_them(tmp_path):
    """Three runs: one normal, one diverging (lr 10), one failing at start (train_subset
    larger than the training split). With --keep-going the study finishes what it can and
    fails naming the failed job; no report pretends to be complete. With allow_partial=true
    the report is marked partial, names the failed run with its reason and lists the
    diverged run with its epoch."""
    folder = _workflow(
        tmp_path,
        {
            "g": {
                "list": [
                    {"optimizer": "sgd", "lr": 1e-3},
                    {"optimizer": "sgd", "lr": 10.0, "momentum": 0.9},
                    {"optimizer": "sgd", "lr": 1e-3, "train_subset": 1000},
                ]
            }
        },
    )
    runs = folder / "results/f/runs"
    ids = _config_ids(folder)
    proc = _snakemake(folder, "--keep-going")
    assert proc.returncode == 1, proc.stderr[-3000:]
    log = sorted((folder / ".snakemake/log").glob("*.snakemake.log"))[-1].read_text()
    failing = ids["g-sgd_lr1e-3_n1000"]
    assert "Error in rule train" in log and f"wildcards: study=f, cfg={failing}" in log
    ok = json.loads((runs / ids["g-sgd_lr1e-3"] / "seed0/metrics.json").read_text())
    assert ok["status"] == "ok"
    diverged = json.loads((runs / ids["g-sgd_lr10_mom0.9"] / "seed0/metrics.json").read_text())
    assert diverged["status"] == "diverged" and diverged["diverged_epoch"] == 1
    assert not (runs / failing).exists()
    assert not (folder / "results/f/summary.csv").exists()
    assert not (folder / "reports/f/report.md").exists()
    note = json.loads((folder / f"results/f/checkpoints/{failing}/seed0.failed.json").read_text())
    assert "train_subset=1000 exceeds the 12 training samples" in note["reason"]

    proc = _snakemake(folder, "--config", "allow_partial=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (folder / "reports/f/report.md").read_text()
    assert "# Study `f` — PARTIAL REPORT" in report
    assert "1 run(s) had no results" in report
    assert "`g-sgd_lr1e-3_n1000/seed0` failed: ValueError while loading the data" in report
    assert "## Runs that did not finish normally" in report
    assert "| `g-sgd_lr10_mom0.9` | 0 | diverged | 1 |" in report
    summary = (folder / "results/f/summary.csv").read_text()
    assert summary.count("\n") == 3  # header + the normal and the diverged run


# -- a killed job --------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_workflow_leaves_nothing_that_looks_complete(tmp_path):
    """SIGKILL to the whole workflow in the middle of training (a node crash, an OOM kill):
    the run has no metrics.json, and Snakemake does not take the partial run directory for a
    result: the next invocation trains it again."""
    folder = _workflow(tmp_path, {"g": {"grid": {"lr": [1e-3]}}}, epochs=10000)
    cfg_id = _config_ids(folder)["g-lr1e-3"]
    log = folder / f"results/logs/train/f/{cfg_id}.log"
    cmd = snakemake_cmd(
        "--cores", "2", "--directory", str(folder), "--configfile", str(folder / "config.yaml")
    )
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and "epoch 2/10000" in log.read_text():
                break
            time.sleep(1)
        assert proc.poll() is None, "the workflow ended before training had started"
        assert "epoch 2/10000" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    keep = folder / f"results/f/checkpoints/{cfg_id}/seed0"
    assert (keep / "history.csv").exists()  # written per epoch, outside the outputs ...
    assert not (keep / "metrics.json").exists()  # ... but never the completion marker
    assert not (folder / f"results/f/runs/{cfg_id}/seed0/metrics.json").exists()
    dry = _snakemake(folder, "-n", "--rerun-incomplete")
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = dry.stdout + dry.stderr
    assert "rule train:" in planned and cfg_id in planned


# -- GPU: the real CUDA allocator runs out ---------------------------------------------------------
@pytest.mark.gpu
def test_cuda_out_of_memory_fails_the_run(tmp_path, prepared, monkeypatch):
    import torch

    from hpstudy.config import TrainConfig
    from hpstudy.failures import RunFailed, failure_note_path
    from hpstudy.train import run

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    monkeypatch.setenv("HPSTUDY_DEVICE", "cuda")
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((1 << 30) / total)  # 1 GiB for this process
    cfg = TrainConfig.from_dict(
        {
            "model": "resnet18_imagenet",
            "upsample_size": 1024,
            "batch_size": 12,
            "epochs": 1,
            "diagnostics_every": 0,
        }
    )
    checkpoint = tmp_path / "checkpoints/seed0.pt"
    try:
        with pytest.raises(RunFailed) as err:
            run(cfg, prepared, tmp_path / "run", checkpoint, log=lambda m: None)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert str(err.value).startswith("out of memory ")
    assert "MiB allocated of" in str(err.value) and "OutOfMemoryError" in str(err.value)
    assert not (tmp_path / "run/metrics.json").exists()
    assert json.loads(failure_note_path(checkpoint).read_text())["out_of_memory"] is True
