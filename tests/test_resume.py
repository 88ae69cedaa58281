"""Runs that survive walltime and kills: real processes are stopped with SIGTERM and SIGKILL,
resumed from their checkpoints, and must end with the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, write_workdir

from hpstudy import attempts
from hpstudy.config import TrainConfig
from hpstudy.failures import EXIT_INTERRUPTED, Interrupted
from hpstudy.train import Trainer

# 56 train samples in batches of 4: 14 optimizer steps per epoch, so a stop lands mid-epoch
CFG = {
    "epochs": 3,
    "batch_size": 4,
    "augment": ["dihedral"],
    "scheduler": "cosine",
    "patience": 5,
    "diagnostics_every": 3,
    "seed": 11,
}
COMPARED = (
    "test_r2",
    "test_mse",
    "test_mae",
    "best_epoch",
    "best_val_loss",
    "epochs_run",
    "optimizer_steps",
)


def compared(metrics: dict) -> dict:
    return {k: metrics[k] for k in COMPARED}


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """The uninterrupted run, trained with one thread like the workflow's train jobs."""
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(TrainConfig.from_dict(CFG), prepared, out, out / "ck.pt", lambda m: None)
        return trainer.fit()
    finally:
        torch.set_num_threads(threads)


def test_sigterm_mid_epoch_resumes_exactly(prepared, reference, tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(CFG)
    trainer = Trainer(cfg, prepared, tmp_path, tmp_path / "ck.pt", lambda m: None)

    def stop_in_epoch_two():  # what PBS does before a walltime kill
        while trainer.state.step < 17:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_in_epoch_two, daemon=True).start()
    with pytest.raises(Interrupted):
        trainer.fit()
    assert (tmp_path / "ck.pt").is_file() and not (tmp_path / "metrics.json").exists()
    resumed = Trainer(cfg, prepared, tmp_path, tmp_path / "ck.pt", lambda m: None).fit()
    ((epoch, batch),) = resumed["resumed_at"]
    assert epoch >= 1 and (epoch, batch) != (1, 0)  # it stopped inside epoch 2 or later
    assert compared(resumed) == compared(reference)


def train_process(cfg_file: Path, prepared: Path, out: Path, keep: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "workflow/scripts/train.py"),
            str(cfg_file),
            str(prepared),
            str(out),
            str(keep),
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended early:\n{proc.stdout.read()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.mark.slow  # two real training processes, one killed mid-run: ~20-30 s each
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_process_resumes_from_checkpoint(prepared, reference, tmp_path, sig):
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(CFG))
    out, keep = tmp_path / "run", tmp_path / "keep"
    ckpt = keep / f"seed{CFG['seed']}.pt"
    proc = train_process(cfg_file, prepared, out, keep)
    wait_for(ckpt, proc)  # the first epoch's checkpoint exists
    proc.send_signal(sig)
    log = proc.communicate(timeout=120)[0]
    if sig == signal.SIGTERM:
        assert proc.returncode == EXIT_INTERRUPTED, log
        assert "checkpoint saved" in log
    else:
        assert proc.returncode == -signal.SIGKILL
    assert ckpt.is_file() and not out.exists()
    proc = train_process(cfg_file, prepared, out, keep)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log
    assert "resumed from" in log
    metrics = json.loads((out / f"seed{CFG['seed']}/metrics.json").read_text())
    assert metrics["resumed_at"]
    assert compared(metrics) == compared(reference)
    assert not ckpt.exists()


def test_checkpoint_of_another_config_is_not_resumed(prepared, tmp_path):
    cfg = TrainConfig.from_dict({**CFG, "epochs": 1})
    trainer = Trainer(cfg, prepared, tmp_path, tmp_path / "ck.pt", lambda m: None)
    trainer.save_checkpoint()
    other = TrainConfig.from_dict({**CFG, "epochs": 1, "lr": 1e-3})
    messages: list[str] = []
    metrics = Trainer(other, prepared, tmp_path, tmp_path / "ck.pt", messages.append).fit()
    assert metrics["resumed_at"] == []
    assert any("belongs to another config" in m for m in messages)


STUDY = """
name: tiny
seeds: 1
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2}}
base: {epochs: 3, batch_size: 4, seed_free: true}
groups:
  bs:
    grid: {batch_size: [4]}
""".replace(", seed_free: true", "")


@pytest.mark.slow
def test_workflow_killed_then_rerun_resumes(tmp_path):
    """SIGKILL the whole workflow mid-training (a lost node), then rerun it."""
    work = write_workdir(tmp_path, STUDY, synthetic={"n_images": 40, "image_size": 32, "seed": 0})
    from conftest import snakemake_cmd

    ckpt_dir = work / "results/tiny/checkpoints"
    proc = subprocess.Popen(
        snakemake_cmd(
            "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1"
        ),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not any(ckpt_dir.rglob("*.pt")):
        assert proc.poll() is None, "the workflow ended before a checkpoint was written"
        assert time.time() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (cfg_id,) = [p.name for p in ckpt_dir.iterdir()]
    metrics_file = work / f"results/tiny/runs/{cfg_id}/seed0/metrics.json"
    assert not metrics_file.exists()
    run_snakemake(work, "--unlock")  # what a user does after the head process was killed
    run_snakemake(work, "--cores", "1", "--rerun-incomplete")
    log = (work / f"results/logs/train/tiny/{cfg_id}.log").read_text()
    assert "resumed from" in log
    resumed = json.loads(metrics_file.read_text())
    # the killed attempt's log is kept next to the checkpoint (Snakemake deleted its own),
    # every attempt is recorded, and the wall time counts both
    kept = ckpt_dir / cfg_id / "seed0.attempts.log"
    assert str(kept) in log or kept.name in log
    text = kept.read_text()
    assert "=== attempt 1: started" in text and "=== attempt 2: started" in text
    assert text.index("epoch 1/3") < text.index("=== attempt 2")  # attempt 1's epochs kept
    record = json.loads(kept.with_name("seed0.attempts.json").read_text())
    assert [r["ended"] for r in record] == [attempts.KILLED, attempts.FINISHED]
    assert resumed["attempts"] == 2 and len(resumed["attempt_wall_times_s"]) == 1
    assert resumed["wall_time_s"] >= resumed["wall_time_last_attempt_s"] > 0
    # the same run again, uninterrupted, in a fresh folder
    fresh = write_workdir(
        tmp_path / "fresh", STUDY, synthetic={"n_images": 40, "image_size": 32, "seed": 0}
    )
    run_snakemake(fresh, "--cores", "1")
    reference = json.loads((fresh / f"results/tiny/runs/{cfg_id}/seed0/metrics.json").read_text())
    assert resumed["resumed_at"] and not reference["resumed_at"]
    assert compared(resumed) == compared(reference)
    assert (work / "reports/tiny/report.md").is_file()


def test_rerun_after_a_failed_seed_trains_only_the_unfinished_seeds(prepared, tmp_path):
    """A job's failing seed leaves the finished ones in the keep folder; the rerun (its
    output folder deleted, as Snakemake does after a failure) restores them untrained."""
    from hpstudy.seeds import run_seeds

    cfg = TrainConfig.from_dict({**CFG, "epochs": 1})
    keep, out = tmp_path / "keep", tmp_path / "out"
    (keep / "seed1.pt").mkdir(parents=True)  # seed 1 fails: its checkpoint cannot be saved
    messages: list[str] = []
    with pytest.raises(Exception):  # noqa: B017 - whatever the failure, the job fails
        run_seeds(cfg, [0, 1], prepared, out, keep, messages.append)
    assert (keep / "seed0/metrics.json").is_file() and not out.exists()
    first = json.loads((keep / "seed0/metrics.json").read_text())
    (keep / "seed1.pt").rmdir()  # the cause is fixed; the rerun
    messages.clear()
    results = run_seeds(cfg, [0, 1, 2], prepared, out, keep, messages.append)
    assert any("seed 0: finished earlier" in m for m in messages)
    assert not any("seed 0: training" in m for m in messages)
    assert results[0] == first
    for seed in (0, 1, 2):
        assert (out / f"seed{seed}/metrics.json").is_file()
        assert (out / f"seed{seed}/history.csv").is_file()
