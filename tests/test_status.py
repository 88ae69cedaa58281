"""`hpstudy status` (hpstudy.status): run states from synthetic result trees (one per state, and a
10,000-run study timed loosely), and while a real tiny workflow runs (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, snakemake_cmd, write_workdir

from hpstudy.cli import main
from hpstudy.status import LAYOUT, render, study_status

STUDY = """
name: tiny
seeds: [0, 1]
dataset: {name: microbeads, image_size: 32}
base: {epochs: 5}
groups:
  bs:
    baseline: bs8
    grid: {batch_size: [4, 8, 16]}
"""


def cfg_of(exp: str) -> str:
    """The configuration (folder under checkpoints/) an experiment of STUDY trains."""
    import yaml

    from hpstudy.config import TrainConfig, config_hash

    batch = int(exp.rsplit("bs", 1)[1])
    base = yaml.safe_load(STUDY)["base"]
    cfg = TrainConfig.from_dict({**base, "batch_size": batch}).to_dict()
    cfg.pop("seed")
    return config_hash(cfg)


def put(results: Path, kind: str, exp: str, seed: int, payload: dict | None = None) -> Path:
    path = results / LAYOUT[kind].format(study="tiny", exp=exp, cfg=cfg_of(exp), seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload or {}))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def tree(tmp_path):
    studies, results = tmp_path / "studies", tmp_path / "results"
    studies.mkdir()
    (studies / "tiny.yaml").write_text(STUDY)
    host = __import__("socket").gethostname()
    put(results, "metrics", "bs-bs4", 0, {"status": "ok", "wall_time_s": 100.0})
    put(results, "metrics", "bs-bs4", 1, {"status": "ok", "wall_time_s": 300.0})
    put(
        results,
        "metrics",
        "bs-bs8",
        0,
        {"status": "diverged", "diverged_epoch": 3, "wall_time_s": 50.0},
    )
    put(
        results,
        "progress",
        "bs-bs8",
        1,
        {
            "epoch": 2,
            "epochs": 5,
            "val_metric": 0.51234,
            "resumes": 1,
            "pid": os.getpid(),
            "hostname": host,
            "job_id": "77.pbs",
            "epoch_s": 20.0,
            "eta_s": 60.0,
            "updated": time.time(),
        },
    )
    put(results, "failure", "bs-bs16", 0, {"reason": "out of memory at epoch 1 (CPU)"})
    put(
        results,
        "progress",
        "bs-bs16",
        1,
        {"epoch": 3, "epochs": 5, "pid": dead_pid(), "hostname": host, "updated": time.time()},
    )
    return studies, results


def test_each_state_is_counted_with_its_detail(tree):
    studies, results = tree
    status = study_status("tiny", results, studies, workdirs=[])
    assert status.counts == {"finished": 2, "running": 1, "waiting": 1, "failed": 1, "diverged": 1}
    text = render(status)
    assert "bs-bs8 seed1: epoch 2 of 5, val 0.5123, resumes 1, ETA 1m00s; job 77.pbs" in text
    assert "bs-bs16 seed0: out of memory at epoch 1 (CPU)" in text
    assert "bs-bs8 seed0: diverged at epoch 3" in text
    assert "1 waiting run(s) will resume from a checkpoint" in text  # bs16 seed1: pid gone
    # mean of the finished and diverged runs (150 s): 60 s left running + 1 waiting x 150 s
    assert status.mean_run_s == pytest.approx(150.0)
    assert status.eta_s == pytest.approx(210.0)


def test_another_hosts_progress_counts_until_it_is_stale(tree):
    studies, results = tree
    path = put(
        results,
        "progress",
        "bs-bs16",
        1,
        {
            "epoch": 3,
            "epochs": 5,
            "pid": 1,
            "hostname": "node7",
            "epoch_s": 10,
            "updated": time.time() - 60,
        },
    )
    assert study_status("tiny", results, studies, workdirs=[]).counts["running"] == 2
    path.write_text(
        json.dumps({"epoch": 3, "hostname": "node7", "pid": 1, "updated": time.time() - 7200})
    )
    assert study_status("tiny", results, studies, workdirs=[]).counts["running"] == 1


def test_pbs_jobs_give_queued_and_failed_states(tree, tmp_path):
    studies, results = tree
    state = tmp_path / ".snakemake" / "pbs"
    state.mkdir(parents=True)
    # one train job per configuration (all its seeds)
    jobs = [
        {
            "jobid": "101.srv",
            "rule": "train",
            "wildcards": {"study": "tiny", "cfg": cfg_of("bs-bs16")},
        },
        {
            "jobid": "102.srv",
            "rule": "train",
            "wildcards": {"study": "tiny", "cfg": cfg_of("bs-bs4")},
        },
    ]
    (state / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    (state / "status.json").write_text(
        json.dumps(
            {
                "live": {"101": ["running", "job_state Q: queued"]},
                "final": {"102": ["failed", "walltime exceeded"]},
            }
        )
    )
    status = study_status("tiny", results, studies, workdirs=[tmp_path])
    run = next(r for r in status.runs if (r.exp, r.seed) == ("bs-bs16", 1))
    # its job is queued: the seed waits, and says for which job
    assert run.state == "waiting" and run.detail["job"]["job_id"] == "101.srv"
    # bs4's seeds finished before its job failed: finished stays finished
    assert {r.state for r in status.runs if r.exp == "bs-bs4"} == {"finished"}


def test_slurm_logs_name_the_job_of_a_failed_run(tree, tmp_path):
    studies, results = tree
    logs = tmp_path / ".snakemake" / "slurm_logs" / "rule_train" / f"tiny_{cfg_of('bs-bs16')}"
    logs.mkdir(parents=True)
    for job in ("998", "1002"):  # a retry: the newest job id wins
        (logs / f"{job}.log").write_text("")
    text = render(study_status("tiny", results, studies, workdirs=[tmp_path]))
    assert (
        "bs-bs16 seed0: out of memory at epoch 1 (CPU); Slurm job 1002 (log "
        f".snakemake/slurm_logs/rule_train/tiny_{cfg_of('bs-bs16')}/1002.log)"
    ) in text


def test_slurm_logs_of_a_round_job_name_the_job(tree, tmp_path):
    """A sequential study's train jobs are train_round's: the latest round's log counts."""
    studies, results = tree
    base = tmp_path / ".snakemake" / "slurm_logs" / "rule_train_round"
    for k, job in ((1, "998"), (2, "1010"), (10, "1020")):
        (base / f"tiny_{k}_{cfg_of('bs-bs16')}").mkdir(parents=True)
        (base / f"tiny_{k}_{cfg_of('bs-bs16')}" / f"{job}.log").write_text("")
    (base / f"tiny_11_{cfg_of('bs-bs16')}").mkdir()  # submitted, not started: no log yet
    text = render(study_status("tiny", results, studies, workdirs=[tmp_path]))
    assert (
        "Slurm job 1020 (log "
        f".snakemake/slurm_logs/rule_train_round/tiny_10_{cfg_of('bs-bs16')}/1020.log)"
    ) in text


def test_command_prints_the_counts_and_runs(tree, capsys):
    studies, results = tree
    assert main(["status", "tiny", "--results", str(results), "--studies", str(studies)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "study tiny: 6 runs  finished 2  running 1  waiting 1  failed 1  diverged 1\n"
    )
    assert "ETA 3m30s (mean run 2m30s, 1 running at once)" in out


def test_watch_stops_when_nothing_is_left(tree, capsys):
    studies, results = tree
    for exp, seed in (("bs-bs8", 1), ("bs-bs16", 0), ("bs-bs16", 1)):
        put(results, "metrics", exp, seed, {"status": "ok", "wall_time_s": 10.0})
    assert (
        main(
            [
                "status",
                "tiny",
                "--watch",
                "0.1",
                "--results",
                str(results),
                "--studies",
                str(studies),
            ]
        )
        == 0
    )
    assert "nothing left to run" in capsys.readouterr().out


def test_unknown_study_lists_the_shipped_ones(capsys):
    assert main(["status", "quik", "--studies", str(REPO / "config/studies")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpstudy status: ") and "no such study file" in err
    assert "did you mean `quick`" in err


def test_library_raises_a_study_error_the_command_prints(tmp_path, capsys):
    """hpstudy.status raises (no SystemExit from library code); the command says why."""
    from hpstudy.studyfile import StudyError

    with pytest.raises(StudyError, match="no such study file"):
        study_status("quik", tmp_path / "results", REPO / "config/studies")
    (tmp_path / "bad.yaml").write_text("name: bad\nseeds: 2\n")
    with pytest.raises(StudyError, match="bad.yaml"):
        study_status("bad", tmp_path / "results", tmp_path)
    assert main(["status", "bad", "--studies", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"hpstudy status: {tmp_path / 'bad.yaml'}")


def write_big_tree(root: Path, n_exp: int = 3334, seeds: int = 3) -> tuple[Path, Path]:
    """A 10,002-run study as the workflow leaves it mid-way: experiments.tsv, 70% finished
    (1% diverged), 20 running, 50 failed, the rest waiting."""
    studies, results = root / "studies", root / "results"
    studies.mkdir(parents=True)
    groups = "\n".join(
        f"  g{g}:\n    grid: {{batch_size: [{', '.join(str(i + 1) for i in range(min(100, n_exp - g * 100)))}]}}"  # noqa: E501
        for g in range((n_exp + 99) // 100)
    )
    (studies / "big.yaml").write_text(
        f"name: big\nseeds: {seeds}\ndataset: {{name: microbeads, image_size: 32}}\n"
        f"base: {{epochs: 10}}\ngroups:\n{groups}\n"
    )
    exps = [
        f"g{g}-bs{i + 1}"
        for g in range((n_exp + 99) // 100)
        for i in range(min(100, n_exp - g * 100))
    ]
    (results / "big").mkdir(parents=True)
    (results / "big" / "experiments.tsv").write_text(
        "experiment\tconfig_hash\tepochs\n" + "".join(f"{e}\tc{e}\t10\n" for e in exps)
    )
    runs = [(e, s) for e in exps for s in range(seeds)]
    host = __import__("socket").gethostname()
    for i, (exp, seed) in enumerate(runs):
        fields = {"study": "big", "exp": exp, "cfg": f"c{exp}", "seed": seed}
        if i < 0.7 * len(runs):
            kind, payload = (
                "metrics",
                {"status": "diverged" if i % 100 == 0 else "ok", "wall_time_s": 60.0 + i % 7},
            )
        elif i < 0.7 * len(runs) + 20:
            kind, payload = (
                "progress",
                {
                    "epoch": 4,
                    "epochs": 10,
                    "pid": os.getpid(),
                    "hostname": host,
                    "eta_s": 30.0,
                    "epoch_s": 6.0,
                },
            )
        elif i < 0.7 * len(runs) + 70:
            kind, payload = "failure", {"reason": "out of memory"}
        else:
            continue
        path = results / LAYOUT[kind].format(**fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))
    return studies, results


def test_ten_thousand_runs_are_counted_quickly(tmp_path):
    studies, results = write_big_tree(tmp_path)
    start, cpu = time.perf_counter(), time.process_time()
    status = study_status("big", results, studies, workdirs=[])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    counts = status.counts
    assert sum(counts.values()) == 10_002
    assert counts["running"] == 20 and counts["failed"] == 50
    assert counts["diverged"] == 71 and counts["finished"] == 7002 - 71
    assert counts["waiting"] == 10_002 - 7002 - 70
    assert elapsed < 10, f"status of 10,000 runs took {elapsed:.1f} s"  # loose: shared CI
    print(f"status of 10,002 runs: {elapsed:.2f} s wall, {cpu:.2f} s CPU")


@pytest.mark.slow
def test_counts_while_a_real_workflow_runs(tmp_path):
    """Snakemake in the background on a tiny study; status polled until it ends."""
    study = """
name: tiny
seeds: 2
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2, seed: 1}}
base: {epochs: 3, batch_size: 8, diagnostics_every: 2, patience: null}
groups:
  bs:
    baseline: bs8
    grid: {batch_size: [4, 8]}
"""
    work = write_workdir(tmp_path, study, synthetic={"n_images": 40, "image_size": 48, "seed": 2})
    cmd = snakemake_cmd(
        "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "2"
    )
    log = open(tmp_path / "snakemake.out", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    seen, deadline = [], time.time() + 900
    try:
        while proc.poll() is None and time.time() < deadline:
            status = study_status("tiny", work / "results", work / "studies", workdirs=[work])
            seen.append(status.counts)
            for run in status.runs:
                if run.state == "running" and run.detail.get("epoch") is not None:
                    assert 0 <= run.detail["epoch"] <= 3 and run.detail["epochs"] == 3
            time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "snakemake.out").read_text()[-3000:]
    final = study_status("tiny", work / "results", work / "studies", workdirs=[work])
    assert final.counts == {"finished": 4, "running": 0, "waiting": 0, "failed": 0, "diverged": 0}
    assert all(sum(c.values()) == 4 for c in seen)
    assert all(c["failed"] == 0 and c["diverged"] == 0 for c in seen)
    assert any(c["running"] > 0 for c in seen), seen  # a run was seen in training
    finished = [c["finished"] for c in seen]
    assert finished == sorted(finished)  # never goes back
    assert all(c["running"] <= 2 for c in seen)  # --cores 2, one core per train job
    # every run of the real workflow wrote TensorBoard events that tensorboard reads back
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for exp in ("bs-bs4", "bs-bs8"):
        for seed in (0, 1):
            folder = work / "results" / "tiny" / "tensorboard" / exp / f"seed{seed}"
            events = EventAccumulator(str(folder))
            events.Reload()
            assert [e.step for e in events.Scalars("loss/val")] == [1, 2, 3]
            assert "final/test_r2" in events.Tags()["scalars"]
            assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
