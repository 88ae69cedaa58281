"""Rule train: all seeds of one configuration, one after the other, in this process.

CLI: python train.py CONFIG_YAML PREPARED OUT_DIR KEEP_DIR [THREADS]
(CONFIG_YAML: a resolved config; its `seeds: [..]` list, else its `seed`, says which seeds;
`fuse_seeds: true` in it trains them as one stacked model.)

Each seed trains in KEEP_DIR/seed{N}/ (checkpoint KEEP_DIR/seed{N}.pt), outside the job's
output OUT_DIR, and a rerun never trains a finished seed again (hpstudy.seeds.run_seeds).
Exits 143 after saving a checkpoint when stopped by SIGTERM/SIGINT; a rerun resumes.
Exits 3 when a seed ran out of memory (Snakemake sees a failed job it may retry),
2 when the prepared dataset is missing, of another format or corrupted.
"""

import sys

# Before anything touches CUDA: on a GPU workstation (profiles/local) take a GPU slot and set
# CUDA_VISIBLE_DEVICES; inside a Slurm/PBS job only when it holds several GPUs (packed runs);
# a no-op without a GPU.
from hpstudy.gpuslots import claim

claim()

from hpstudy.config import TrainConfig  # noqa: E402
from hpstudy.failures import EXIT_INTERRUPTED, EXIT_OUT_OF_MEMORY, Interrupted, RunFailed  # noqa: E402
from hpstudy.logs import redirect_to  # noqa: E402
from hpstudy.metrics import primary_metric  # noqa: E402
from hpstudy.prepare import PreparedError  # noqa: E402
from hpstudy.seeds import run_seeds  # noqa: E402


def main(
    cfg_dict,
    seeds,
    prepared,
    out_dir,
    keep_dir,
    threads=None,
    job_log=None,
    tensorboard=None,
    fuse=False,
):
    import torch

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict({**cfg_dict, "seed": seeds[0]})
    try:
        # each seed's every attempt is also logged beside its checkpoint (hpstudy.attempts)
        results = run_seeds(
            cfg,
            seeds,
            prepared,
            out_dir,
            keep_dir,
            job_log=job_log,
            tensorboard=tensorboard or None,
            fuse=fuse,
        )
    except Interrupted as stop:
        print(f"hpstudy: {stop}; checkpoint saved in {keep_dir}; rerun to resume", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except RunFailed as failed:
        print(f"hpstudy: run failed: {failed}", file=sys.stderr)
        sys.exit(EXIT_OUT_OF_MEMORY)
    except PreparedError as err:  # missing, foreign or corrupted prepared file
        print(f"hpstudy: refusing the prepared dataset: {err}", file=sys.stderr)
        sys.exit(2)
    for seed, metrics in results.items():
        key = primary_metric(metrics["task"])
        value = metrics.get(key)  # 4 significant digits, from the best-validation weights
        print(
            f"done: seed {seed} status {metrics['status']} {key} "
            f"{'-' if value is None else format(value, '.4g')}",
            file=sys.stderr,
        )


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        main(
            dict(sm.params.cfg),
            list(sm.params.seeds),
            sm.input.prepared,
            sm.output.runs,
            sm.params.keep,
            sm.threads,
            tensorboard=sm.params.tensorboard,
            # read from the workflow config, not a param: fused or not, these are the same
            # runs, and a changed param would make Snakemake rerun finished train jobs
            fuse=bool(sm.config.get("fuse_seeds", False)),
        )
else:
    import yaml

    cfg_path, prepared, out_dir, keep_dir, *threads = sys.argv[1:6]
    with open(cfg_path) as fh:
        values = yaml.safe_load(fh)
    seeds = values.pop("seeds", None) or [values.get("seed", 0)]
    fuse = bool(values.pop("fuse_seeds", False))
    main(
        values,
        [int(s) for s in seeds],
        prepared,
        out_dir,
        keep_dir,
        *map(int, threads),
        fuse=fuse,
    )
