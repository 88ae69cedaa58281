"""What an experiment costs beyond its compute, measured side by side on this machine.

    python benchmarks/benchmark.py --quick      # reduced sizes, a few minutes on a laptop CPU (CI)
    python benchmarks/benchmark.py --full       # the bottleneck study's settings: 974 images at its
                                             # image size (256 px), batch 32

Sections (each row: section, case, metric, value, unit, note):
  data      images/s of the device-resident path and of the DataLoader path with 0/2/4
            workers, data only (load + normalise + augment, no model)
  train     the same paths in full training steps of the real Trainer loop
  loop      training-loop efficiency: forward+backward+optimizer step on a batch already in
            memory, divided by the real Trainer loop's time per optimizer step (1.0 = no
            overhead)
  overhead  per-job fixed cost: a real `python workflow/scripts/train.py` from process start to
            its first training step, and its parts (interpreter, import torch, torchvision,
            hpstudy.train, load prepared, build model, FLOP counting)
  dag       `snakemake -n` wall time for generated studies of N experiments
  gpu       (CUDA only) one bottleneck experiment, the whole study estimate, ResNet-18 epoch
  workflow  (only when asked for) the quick study end to end through Snakemake, for this tree
            and for --base (a git revision, checked out in a temporary worktree) side by
            side: wall time, train jobs spawned, and the per-run fixed overhead = (sum of the
            train jobs' wall time - sum of the runs' training time) / runs
  main      (only when named in --sections: it takes the study's time) the README's main job,
            `snakemake --cores all` of the default study from an empty results folder, timed
            next to the cost estimate the workflow prints at its start

Each section is a module of benchmarks/sections/ (`common`: what they share); this script
chooses the settings and sections, runs them and writes the table.

Prints a markdown table and writes `benchmark-<mode>.csv` and `.md` to --out
(default reports/benchmarks/). Numbers are never asserted on; the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from sections.common import FULL, QUICK, REPO, Settings, Table, machine_header, make_prepared
from sections.dag import bench_dag, write_scale_study
from sections.data import bench_data, bench_train
from sections.gpu import bench_gpu
from sections.loop import bench_loop
from sections.overhead import bench_overhead, subprocess_envs
from sections.workflow import bench_main, bench_workflow

SECTIONS = ("data", "train", "loop", "overhead", "dag", "gpu", "workflow", "main")
# `workflow` runs the quick study twice and `main` the README's main job: ask for them
DEFAULT_SECTIONS = SECTIONS[:-2]
__all__ = ["main", "run", "write_scale_study"]


def first_step(table: Table) -> float:
    """The fastest start-to-first-step of the overhead section (0 when it did not run)."""
    first = [float(r["value"]) for r in table.rows if r["metric"] == "start_to_first_step"]
    return min(first) if first else 0.0


def run(
    s: Settings,
    out_dir: Path,
    sections: tuple[str, ...] = DEFAULT_SECTIONS,
    work_dir: Path | None = None,
    command: str = "",
    base: str = "HEAD~1",
    cores: int = 2,
) -> Table:
    table = Table()
    with tempfile.TemporaryDirectory(prefix="hpstudy-bench-", dir=work_dir) as tmp:
        work = Path(tmp)
        needs_data = set(sections) & {"data", "train", "loop", "overhead", "gpu"}
        prepared = make_prepared(work, s) if needs_data else None
        envs = subprocess_envs(work, s) if set(sections) & {"overhead", "dag"} else {}
        steps = {
            "data": lambda: bench_data(table, s, prepared, work),
            "train": lambda: bench_train(table, s, prepared, work),
            "loop": lambda: bench_loop(table, s, prepared, work),
            "overhead": lambda: bench_overhead(table, s, prepared, work, envs),
            "dag": lambda: bench_dag(table, s, work, envs[dag_label], dag_label),
            "gpu": lambda: bench_gpu(table, s, prepared, work, first_step(table)),
            "workflow": lambda: bench_workflow(table, work, base, cores),
            "main": lambda: bench_main(table, work),
        }
        dag_label = "bytecode_cache" if "bytecode_cache" in envs else "as_configured"
        for name, step in steps.items():
            if name in sections:
                # progress only (stderr): the numbers are printed once, in the table below
                print(f"benchmark: {name} ...", file=sys.stderr, flush=True)
                before, start = len(table.rows), time.perf_counter()
                step()
                print(
                    f"benchmark: {name}: {len(table.rows) - before} measurements in "
                    f"{time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    header = machine_header(s, command or f"python benchmarks/benchmark.py --{s.mode}")
    csv_path, md_path = table.write(out_dir, s.mode, header)
    print(table.markdown(header))
    print(f"wrote {csv_path} and {md_path}")
    return table


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/benchmark.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        dest="mode",
        const="quick",
        help="reduced sizes (CI; the default)",
    )
    mode.add_argument(
        "--full",
        action="store_const",
        dest="mode",
        const="full",
        help="the bottleneck study's settings",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "reports" / "benchmarks",
        help="folder for benchmark-<mode>.csv/.md (default reports/benchmarks)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all "
        "but workflow and main, which run whole studies)",
    )
    parser.add_argument(
        "--base", default="HEAD~1", help="workflow section: the git revision to compare with"
    )
    parser.add_argument(
        "--cores", type=int, default=2, help="workflow section: snakemake --cores (default 2)"
    )
    parser.add_argument("--image-size", type=int, help="override the image size (px)")
    parser.add_argument("--n-images", type=int, help="override the number of images")
    parser.add_argument("--batch-size", type=int, help="override the batch size")
    parser.add_argument("--workers", help="DataLoader worker counts, e.g. 0,2,4")
    parser.add_argument("--dag-sizes", help="experiment counts for snakemake -n, e.g. 100,1000")
    parser.add_argument(
        "--augment",
        help="augmentations in the data and loop sections, "
        "e.g. dihedral or hflip,crop (default: none, as the bottleneck study)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads, here and in the subprocesses (default: "
        "torch's; use 1 on a host oversubscribed by other work)",
    )
    parser.add_argument("--work-dir", type=Path, help="parent of the temporary work folder")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = command_line()
    args = parser.parse_args(argv)
    s = FULL if args.mode == "full" else QUICK
    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    changes: dict = {}
    if args.image_size:
        changes["image_size"] = args.image_size
    if args.n_images:
        changes["n_images"] = args.n_images
    if args.augment:
        changes["augment"] = tuple(a.strip() for a in args.augment.split(",") if a.strip())
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.workers:
        changes["workers"] = tuple(int(w) for w in args.workers.split(","))
    if args.dag_sizes:
        changes["dag_sizes"] = tuple(int(n) for n in args.dag_sizes.split(","))
    s = replace(s, **changes)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the subprocesses
    argv = sys.argv[1:] if argv is None else argv
    run(
        s,
        args.out,
        sections,
        args.work_dir,
        " ".join(["python benchmarks/benchmark.py", *argv]),
        args.base,
        args.cores,
    )


if __name__ == "__main__":
    main()
