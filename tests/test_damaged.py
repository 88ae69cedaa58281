"""Damaged results are named and repaired (issue 21): finished seeds are sealed with the
checksums of their files, the published copy is a copy (not a hard link of the kept one),
a damaged file is found before it is reused or read, every JSON/CSV read error names its
file, and an unreadable checkpoint is said on the console. The workflow test damages a
finished seed of a real tiny run and shows a plain rerun repairing it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_snakemake, write_workdir

from hpstudy import integrity
from hpstudy.config import TrainConfig
from hpstudy.extract import seed_record
from hpstudy.seeds import RUN_FILES, run_seeds

CFG = {"model": "mlp", "epochs": 1, "batch_size": 16, "diagnostics_every": 0, "patience": None}


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory) -> tuple[Path, Path, dict]:
    """Two seeds of a tiny MLP, trained for real: (keep folder, published folder, metrics)."""
    root = tmp_path_factory.mktemp("trained")
    keep, out = root / "keep", root / "out"
    results = run_seeds(TrainConfig.from_dict(CFG), [0, 1], prepared, out, keep, lambda m: None)
    return keep, out, results


def _copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / folder.name
    shutil.copytree(folder, target, copy_function=shutil.copy2)
    return target


def test_a_finished_seed_is_sealed_and_published_as_a_copy(trained):
    keep, out, _ = trained
    for seed in (0, 1):
        kept, published = keep / f"seed{seed}", out / f"seed{seed}"
        assert integrity.sealed(kept) == integrity.sealed(published)
        assert set(integrity.sealed(kept)) == set(RUN_FILES)
        for name in RUN_FILES:  # damage to one copy is never damage to both
            assert not os.path.samefile(kept / name, published / name)
        assert integrity.damaged(kept, full=True) == integrity.damaged(published, full=True) == []


def test_truncated_or_altered_files_are_named(trained, tmp_path):
    folder = _copy_of(trained[1] / "seed0", tmp_path)
    metrics = folder / "metrics.json"
    size = metrics.stat().st_size
    metrics.write_bytes(metrics.read_bytes()[:20])
    (folder / "history.csv").unlink()
    assert integrity.damaged(folder) == [
        f"{folder / 'history.csv'}: missing",
        f"{metrics}: 20 bytes where {size:,} were sealed (truncated or overwritten)",
    ]
    # same size, a changed byte: found by its content, even with the old time put back
    folder = _copy_of(trained[1] / "seed1", tmp_path)
    config = folder / "config.yaml"
    stat, text = config.stat(), config.read_bytes()
    config.write_bytes(text[:-2] + (b"0\n" if text[-2:] != b"0\n" else b"1\n"))
    assert integrity.damaged(folder) == [
        f"{config}: content differs from its checksum ({integrity.MANIFEST})"
    ]
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert integrity.damaged(folder) == []  # size and time as sealed: the cheap check trusts it
    assert integrity.damaged(folder, full=True)  # the full one, before reading or reusing


def test_a_damaged_kept_seed_is_moved_aside_and_trained_again(prepared, trained, tmp_path):
    """Only the damaged seed trains again, to the same result (seeds are deterministic)."""
    keep = tmp_path / "keep"
    for seed in (0, 1):
        _copy_of(trained[0] / f"seed{seed}", keep)
    history = keep / "seed1" / "history.csv"
    history.write_text(history.read_text()[:-10])
    messages: list[str] = []
    out = tmp_path / "out"
    results = run_seeds(TrainConfig.from_dict(CFG), [0, 1], prepared, out, keep, messages.append)
    assert any(m.startswith("seed 0: finished earlier") for m in messages)
    assert any("seed1: finished earlier but damaged" in m and "history.csv" in m for m in messages)
    assert any(m.startswith("seed 1: training") for m in messages)
    assert not any(m.startswith("seed 0: training") for m in messages)
    assert (keep / "seed1.damaged" / "history.csv").is_file()  # kept for a look, not lost
    for seed in (0, 1):
        for key in ("test_r2", "test_mae", "config_hash"):
            assert results[seed][key] == trained[2][seed][key]
    assert integrity.damaged(keep / "seed1", full=True) == []


def test_reading_a_damaged_seed_names_the_file_and_the_repair(trained, tmp_path):
    folder = _copy_of(trained[1] / "seed0", tmp_path)
    (folder / "metrics.json").write_text('{"test_r2": 0.5')
    with pytest.raises(integrity.DamagedFile) as err:
        seed_record(folder, "cfg", 0)
    assert f"{folder / 'metrics.json'}: " in str(err.value)
    assert "rerun snakemake: it republishes the seed, or trains it again" in str(err.value)
    (folder / integrity.MANIFEST).unlink()  # unsealed (a seed from before the seals)
    with pytest.raises(integrity.DamagedFile, match=r"metrics.json: not valid JSON \(Expecting"):
        seed_record(folder, "cfg", 0)


def test_every_json_and_csv_read_error_names_its_file(tmp_path):
    bad_json, bad_gz, bad_csv = tmp_path / "r.json", tmp_path / "c.csv.gz", tmp_path / "c.csv"
    bad_json.write_text('[{"seed": 0},')
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    bad_csv.write_bytes(b'a,b\n1,"2\n')
    for path, reader, kind in (
        (bad_json, integrity.read_json, "not valid JSON"),
        (bad_gz, integrity.read_csv, "not a readable table"),
        (bad_csv, integrity.read_csv, "not a readable table"),
    ):
        with pytest.raises(integrity.DamagedFile) as err:
            reader(path)
        assert str(err.value).startswith(f"{path}: {kind}")
        assert "delete it and rerun snakemake to remake it" in str(err.value)
    from hpstudy.aggregate import load_records

    with pytest.raises(integrity.DamagedFile, match=str(bad_json)):
        load_records([bad_json])


def test_a_rule_script_ends_with_the_message_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as stop, integrity.exit_on_damage():
        integrity.read_json(Path(__file__).with_suffix(".py"))  # Python is not JSON
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hpstudy: ") and "test_damaged.py: not valid JSON" in err
    assert "Traceback" not in err


def test_an_unreadable_checkpoint_is_said_on_the_console(tmp_path, capfd):
    """The trainer's log gets the line as before; the console the job's log replaced (the
    terminal, or a cluster job's output) gets it too."""
    import torch

    from hpstudy import checkpoint
    from hpstudy.logs import redirect_to

    ckpt = tmp_path / "seed0.pt"
    torch.save({"format": checkpoint.FORMAT}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    assert "BadZipFile" in integrity.checkpoint_problem(ckpt)
    messages: list[str] = []
    with redirect_to(tmp_path / "job.log"):
        found = checkpoint.load(
            ckpt, TrainConfig.from_dict(CFG), "sha", torch.device("cpu"), messages.append
        )
    assert found is None
    assert messages == [f"checkpoint {ckpt} is unreadable ({messages[0].split('(', 1)[1]}"]
    console = capfd.readouterr().err
    assert f"hpstudy: warning: checkpoint {ckpt} is unreadable" in console
    assert "trains again from scratch" in console


# -- the workflow: a damaged finished seed is found at the start and repaired --------------
STUDY = """
name: tiny
seeds: 2
dataset: {name: microbeads, image_size: 32, split: {train: 0.6, val: 0.2, test: 0.2, seed: 1}}
base: {model: mlp, epochs: 1, batch_size: 8, diagnostics_every: 0, patience: null}
groups:
  lr:
    grid: {lr: [1.0e-3, 3.0e-3]}
"""


@pytest.mark.slow
def test_a_plain_rerun_repairs_a_damaged_seed(tmp_path):
    work = write_workdir(
        tmp_path, STUDY, tensorboard=False, synthetic={"n_images": 40, "image_size": 32, "seed": 0}
    )
    first = run_snakemake(work, "--cores", "1")
    # warnings before any job reach the console of a real run
    assert "hpstudy: warning:" in first.stderr and "the test split has 8 image(s)" in first.stderr
    runs = sorted((work / "results/tiny/runs").iterdir())
    cfg = runs[0].name
    published = runs[0] / "seed0" / "metrics.json"
    kept = work / f"results/tiny/checkpoints/{cfg}/seed0/metrics.json"
    record = work / f"results/tiny/records/{cfg}.json"
    before = json.loads(published.read_text())

    published.write_text(published.read_text()[:40])  # truncated: the kept copy is intact
    dry = run_snakemake(work, "-n", "--cores", "1")
    assert "hpstudy: warning:" in dry.stderr  # the warnings reach a dry run's console too
    assert f"hpstudy: damaged: {published}: 40 bytes where" in dry.stderr
    assert f"snakemake --forcerun {runs[0]}" in dry.stderr
    assert "reason: Forced execution" in dry.stdout + dry.stderr
    assert "Nothing to be done" not in dry.stdout + dry.stderr
    run_snakemake(work, "--cores", "1")
    assert json.loads(published.read_text()) == before  # copied again, not retrained
    log = (work / f"results/logs/train/tiny/{cfg}.log").read_text()
    assert "seed 0: finished earlier" in log and "seed 0: training" not in log
    assert json.loads(record.read_text())[0]["test_r2"] == before["test_r2"]

    # both copies damaged: that seed (only) trains again, to the same numbers
    kept.write_text("{}")
    published.write_text("{}")
    repair = run_snakemake(work, "--cores", "1")
    assert f"{kept.parent}: finished earlier but damaged" in repair.stdout + repair.stderr
    log = (work / f"results/logs/train/tiny/{cfg}.log").read_text()
    assert "seed 0: training" in log and "seed 1: finished earlier" in log
    after = json.loads(published.read_text())
    assert after["test_r2"] == before["test_r2"] and after["config_hash"] == before["config_hash"]
    again = run_snakemake(work, "-n", "--cores", "1")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_seeds_trained_as_one_fused_model_are_sealed_when_they_finish(prepared, tmp_path):
    """Sealed as they finish, not only when published: here publishing fails (its output
    path is a file) and both seeds are sealed all the same."""
    messages: list[str] = []
    keep, out = tmp_path / "keep", tmp_path / "out"
    out.write_text("in the way")
    with pytest.raises(OSError):
        run_seeds(
            TrainConfig.from_dict(CFG), [0, 1], prepared, out, keep, messages.append, fuse=True
        )
    assert not any("one after the other" in m for m in messages), messages  # they were fused
    for seed in (0, 1):
        assert set(integrity.sealed(keep / f"seed{seed}")) == set(RUN_FILES)
        assert integrity.damaged(keep / f"seed{seed}", full=True) == []
