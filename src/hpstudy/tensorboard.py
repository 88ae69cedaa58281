"""TensorBoard event files of one run: live curves while it trains, hparams when it ends.

`RunWriter(logdir)` writes, once per epoch, the scalars of the run's history row (train and
validation loss, every validation metric, learning rate, gradient-norm statistics, speed)
and, at the end, an hparams summary (the resolved config and the final metrics) that the
HParams dashboard shows as a table and as parallel coordinates over all runs:

    uv run tensorboard --logdir results/{study}/tensorboard

With `logdir=None`, or without the `tensorboard` package, every method is a no-op. Events
are flushed after every epoch, so curves appear while the run trains; a resumed run appends
a new event file to the same folder and TensorBoard joins them by step (= epoch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# history.csv column -> TensorBoard tag; val_* metrics are added as "val/<metric>"
TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "lr": "optim/lr",
    "grad_norm_mean": "gradients/norm_mean",
    "grad_norm_cv": "gradients/norm_cv",
    "grad_noise_scale": "gradients/noise_scale",
    "grad_variance": "gradients/variance",
    "epoch_time_s": "speed/epoch_time_s",
    "samples_per_s": "speed/samples_per_s",
}
FINAL_METRICS = ("best_val_loss", "best_epoch", "epochs_run", "train_time_s")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def hparam_value(value: Any) -> bool | int | float | str:
    """The HParams plugin takes bool, int, float or str: lists and None become text."""
    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "+".join(map(str, value)) or "none"
    return str(value)


class RunWriter:
    """The training loop's TensorBoard hook: `epoch(row)` per epoch, `finish(cfg, metrics)`."""

    def __init__(self, logdir: str | Path | None):
        self.writer = None
        if logdir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is missing: no events, no error
            return
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(logdir))

    def epoch(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            tag = TAGS.get(key) or (
                f"val/{key[4:]}" if key.startswith("val_") and key != "val_loss" else None
            )
            number = _number(value)
            if tag is not None and number is not None:
                self.writer.add_scalar(tag, number, step)
        self.writer.flush()

    def finish(self, cfg, metrics: dict[str, Any]) -> None:
        """The hparams summary: the resolved config against the final metrics."""
        if self.writer is None:
            return
        hparams = {k: hparam_value(v) for k, v in cfg.to_dict().items()}
        final = {
            f"final/{k}": _number(v)
            for k, v in metrics.items()
            if k.startswith("test_") or k in FINAL_METRICS
        }
        final = {k: v for k, v in final.items() if v is not None}
        final["final/diverged"] = float(metrics.get("status") == "diverged")
        # run_name="." keeps the summary in this run's folder (not a timestamped subfolder)
        self.writer.add_hparams(hparams, final, run_name=".")
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def overhead(repeats: int = 3, epochs: int = 5) -> dict[str, float]:
    """The same tiny CPU run (one thread) with and without the writer, interleaved
    (A B A B ...) so that load drift hits both alike. Returns the medians of each run's CPU
    and wall time and their ratios, and the time spent inside the writer's calls per epoch
    (timed directly, so it does not drown in the machine's noise)."""
    import statistics
    import tempfile
    import time

    import torch

    from hpstudy.config import TrainConfig
    from hpstudy.microbeads import generate
    from hpstudy.prepare import prepare
    from hpstudy.train import run

    spent = {"__init__": 0.0, "epoch": 0.0, "finish": 0.0, "epochs": 0}

    def timed(method):
        def wrapper(self, *args):
            start = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                spent[method.__name__] += time.perf_counter() - start
                spent["epochs"] += method.__name__ == "epoch"

        return wrapper

    # the class the trainer uses (under `python -m`, this module's own copy is __main__'s)
    from hpstudy.tensorboard import RunWriter as Writer

    torch.set_num_threads(1)
    original = Writer.__init__, Writer.epoch, Writer.finish
    Writer.__init__, Writer.epoch, Writer.finish = map(timed, original)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            raw = generate(tmp / "raw", n_images=120, size=64, seed=0, progress=False)
            spec = {
                "name": "microbeads",
                "image_size": 32,
                "split": {"method": "random", "train": 0.7, "val": 0.15, "test": 0.15, "seed": 1},
            }
            prepare(spec, raw, tmp / "prepared.pt", tmp / "manifest.json")
            cfg = TrainConfig.from_dict({"epochs": epochs, "batch_size": 16, "patience": None})
            times: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
            for i in range(repeats):
                for kind in ("without", "with"):
                    name = f"{kind}{i}"
                    cpu, wall = time.process_time(), time.perf_counter()
                    run(
                        cfg,
                        tmp / "prepared.pt",
                        tmp / name,
                        tmp / f"{name}.pt",
                        log=lambda msg: None,
                        tensorboard=tmp / "tb" / name if kind == "with" else None,
                    )
                    times[kind].append((time.process_time() - cpu, time.perf_counter() - wall))
    finally:
        Writer.__init__, Writer.epoch, Writer.finish = original
    out = {}
    for kind, pairs in times.items():
        out[f"{kind}_cpu_s"] = statistics.median(c for c, _ in pairs)
        out[f"{kind}_wall_s"] = statistics.median(w for _, w in pairs)
    out["cpu_ratio"] = out["with_cpu_s"] / out["without_cpu_s"]
    out["wall_ratio"] = out["with_wall_s"] / out["without_wall_s"]
    out["epoch_call_ms"] = 1000 * spent["epoch"] / max(spent["epochs"], 1)
    out["start_finish_ms_per_run"] = 1000 * (spent["__init__"] + spent["finish"]) / repeats
    out["writer_share"] = sum(spent[k] for k in ("__init__", "epoch", "finish")) / sum(
        w for _, w in times["with"]
    )
    return out


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--overhead"]:
        sys.exit("usage: python -m hpstudy.tensorboard --overhead")
    r = overhead()
    print(
        f"median per run, without / with the writer: CPU {r['without_cpu_s']:.2f} / "
        f"{r['with_cpu_s']:.2f} s (ratio {r['cpu_ratio']:.3f}), wall {r['without_wall_s']:.2f}"
        f" / {r['with_wall_s']:.2f} s (ratio {r['wall_ratio']:.3f}); inside the writer: "
        f"{r['epoch_call_ms']:.2f} ms per epoch, {r['start_finish_ms_per_run']:.0f} ms per "
        f"run to start it (the first also imports tensorboard) and write the hparams; "
        f"{r['writer_share']:.2%} of the runs' wall time"
    )
