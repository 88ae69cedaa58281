"""A train job: every seed of one configuration, one after the other, in one process.

Each seed trains in `keep_dir/seed{N}/` with its checkpoint `keep_dir/seed{N}.pt`; both lie
outside the job's declared output `out_dir`, which Snakemake deletes when a job fails or is
killed. A seed whose results are already in `keep_dir` (same config hash, same data) is not
trained again, so a rerun after a failure or a walltime kill trains only the seeds that had
not finished, and a later round with more seeds only the new ones. With `fuse=True` the
seeds still to train train as one stacked model first (hpstudy.fused), with the same files.
A finished seed's files are sealed with their checksums (hpstudy.integrity): a damaged one
is trained again, not reused. When every seed has finished, their files are copied into
`out_dir/seed{N}/` (`publish`): copies, so that damage to one copy is never damage to both.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from hpstudy import attempts, integrity
from hpstudy.config import TrainConfig
from hpstudy.device import attempt_resources
from hpstudy.failures import Interrupted
from hpstudy.fused import run_fused
from hpstudy.logs import console
from hpstudy.prepare import load_prepared
from hpstudy.train import run

RUN_FILES = ("config.yaml", "history.csv", "layers.csv.gz", "metrics.json")


def finished_seed(seed_dir: Path, cfg: TrainConfig, content_sha256: str, log=None) -> dict | None:
    """The metrics of a seed that finished earlier with this config on this data, or None.
    A damaged one (its files differ from their checksums) is named to `log` and on the
    console, and moved aside to `seed{N}.damaged/` so that it trains again from a clean
    folder."""
    problems = integrity.damaged(seed_dir, full=True)
    if problems:
        aside = seed_dir.with_name(f"{seed_dir.name}.damaged")
        shutil.rmtree(aside, ignore_errors=True)
        seed_dir.rename(aside)
        message = (
            f"{seed_dir}: finished earlier but damaged ({'; '.join(problems)}); moved to "
            f"{aside.name}/, the seed trains again"
        )
        console(f"hpstudy: warning: {message}")
        if log:
            log(message)
        return None
    try:
        metrics = json.loads((seed_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        metrics.get("config_hash") != cfg.hash()
        or metrics.get("prepared_sha256") != content_sha256
        or any(not (seed_dir / name).is_file() for name in RUN_FILES)
    ):
        return None
    return metrics


def publish(src: Path, dst: Path) -> None:
    """Copy a finished seed's files into the job's output folder, sealed with the kept
    copy's checksums (a seed finished before seals existed is sealed now)."""
    sums = integrity.sealed(src) or integrity.seal(src, RUN_FILES)
    dst.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        target = dst / name
        target.unlink(missing_ok=True)  # never write through an old hard link
        shutil.copy2(src / name, target)
    integrity.seal(dst, RUN_FILES, expected=sums)


def seed_config(cfg: TrainConfig, seed: int) -> TrainConfig:
    return TrainConfig.from_dict({**cfg.to_dict(), "seed": int(seed)})


def run_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    prepared: str | Path,
    out_dir: str | Path,
    keep_dir: str | Path,
    log=None,
    job_log: str | Path | None = None,
    tensorboard: str | Path | None = None,
    fuse: bool = False,
) -> dict[int, dict[str, Any]]:
    """Train every seed of `cfg` that has not finished (see the module's docstring) and
    publish them all; returns each seed's metrics. A failing seed (out of memory, an error)
    does not stop the others; the first failure is raised at the end. `Interrupted`
    (SIGTERM) is raised at once, after its checkpoint. `fuse`: train the unfinished seeds
    as one model where they can be (hpstudy.fused says why not, and falls back to this)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    keep_dir, out_dir = Path(keep_dir), Path(out_dir)
    data = load_prepared(prepared)
    results: dict[int, dict[str, Any]] = {}
    failures: list[tuple[int, Exception]] = []
    todo = []
    for seed in seeds:
        seed_dir = keep_dir / f"seed{seed}"
        one = seed_config(cfg, seed)
        done = finished_seed(seed_dir, one, data["manifest"]["content_sha256"], log)
        if done is not None:
            log(f"seed {seed}: finished earlier ({seed_dir}); not trained again")
            results[seed] = done
        else:
            todo.append(seed)
    if fuse and len(todo) > 1:
        cfgs = [seed_config(cfg, seed) for seed in todo]
        fused = run_fused(cfgs, prepared, keep_dir, log, data, job_log, tensorboard)
        for seed in fused:  # what a seed trained alone gets below
            integrity.seal(keep_dir / f"seed{seed}", RUN_FILES)
        results.update(fused)
    for seed in todo:
        if seed in results:  # trained in the fused group
            continue
        one = seed_config(cfg, seed)
        seed_dir = keep_dir / f"seed{seed}"
        log(f"seed {seed}: training ({len(results) + len(failures) + 1} of {len(seeds)})")
        ckpt = keep_dir / f"seed{seed}.pt"
        try:
            # every attempt's log and record kept beside the checkpoint (walltime kills too);
            # the output still reaches the job's log (or the console) live
            with attempts.track(ckpt, job_log, attempt_resources()):
                results[seed] = run(
                    one,
                    prepared,
                    seed_dir,
                    ckpt,
                    log,
                    data,
                    tensorboard=Path(tensorboard) / f"seed{seed}" if tensorboard else None,
                )
            integrity.seal(seed_dir, RUN_FILES)
        except Interrupted:
            raise
        except Exception as err:  # noqa: BLE001 - the other seeds still train
            log(f"seed {seed}: failed: {type(err).__name__}: {err}")
            failures.append((seed, err))
    if failures:
        raise failures[0][1]
    for seed in seeds:
        publish(keep_dir / f"seed{seed}", out_dir / f"seed{seed}")
    return results
