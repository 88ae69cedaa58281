"""What TensorBoard events cost a run, measured side by side on this machine.

    uv run python benchmarks/tensorboard_overhead.py [--repeats 3] [--epochs 5]

The same tiny CPU run (one thread, 84 training images) without and with the writer,
interleaved (A B A B ...) so that load drift hits both alike; prints the medians of each
run's CPU and wall time and their ratios, and the time spent inside the writer's calls per
epoch (timed directly, so it does not drown in the machine's noise). docs/watching.md
quotes its output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO / "src"))


def overhead(repeats: int = 3, epochs: int = 5) -> dict[str, float]:
    import torch

    from hpstudy.config import TrainConfig
    from hpstudy.microbeads import generate
    from hpstudy.prepare import prepare
    from hpstudy.tensorboard import RunWriter as Writer
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs with and without (3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (5)")
    args = parser.parse_args(argv)
    r = overhead(args.repeats, args.epochs)
    print(
        f"median per run, without / with the writer: CPU {r['without_cpu_s']:.2f} / "
        f"{r['with_cpu_s']:.2f} s (ratio {r['cpu_ratio']:.3f}), wall {r['without_wall_s']:.2f}"
        f" / {r['with_wall_s']:.2f} s (ratio {r['wall_ratio']:.3f}); inside the writer: "
        f"{r['epoch_call_ms']:.2f} ms per epoch, {r['start_finish_ms_per_run']:.0f} ms per "
        f"run to start it (the first also imports tensorboard) and write the hparams; "
        f"{r['writer_share']:.2%} of the runs' wall time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
