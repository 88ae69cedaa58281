"""Rule train. CLI: python train.py CONFIG_YAML PREPARED OUT_DIR CHECKPOINT [THREADS]

Exits 143 after saving a checkpoint when stopped by SIGTERM/SIGINT; a rerun resumes.
Exits 3 when out of memory (no metrics.json: Snakemake sees a failed job it may retry),
2 when the prepared dataset is missing, of another format or corrupted.
"""

import sys

# Before anything touches CUDA: on a GPU workstation (profiles/local) take a GPU slot and set
# CUDA_VISIBLE_DEVICES; a no-op under Slurm/PBS or without a GPU.
from hpstudy.gpuslots import claim

claim()

from hpstudy.config import TrainConfig  # noqa: E402
from hpstudy.logs import redirect_to  # noqa: E402
from hpstudy.prepare import PreparedError  # noqa: E402
from hpstudy.train import EXIT_INTERRUPTED, EXIT_OUT_OF_MEMORY, Interrupted, RunFailed, run  # noqa: E402


def main(cfg_dict, prepared, out_dir, checkpoint, threads=None, tensorboard=None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        metrics = run(TrainConfig.from_dict(cfg_dict), prepared, out_dir, checkpoint,
                      tensorboard=tensorboard or None)
    except Interrupted as stop:
        print(f"hpstudy: {stop}; checkpoint saved to {checkpoint}; rerun to resume",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except RunFailed as failed:
        print(f"hpstudy: run failed: {failed}", file=sys.stderr)
        sys.exit(EXIT_OUT_OF_MEMORY)
    except PreparedError as err:  # missing, foreign or corrupted prepared file
        print(f"hpstudy: refusing the prepared dataset: {err}", file=sys.stderr)
        sys.exit(2)
    key = "test_r2" if metrics["task"] == "regression" else "test_accuracy"
    value = metrics.get(key)  # 4 significant digits, from the best-validation weights
    print(f"done: status {metrics['status']} {key} "
          f"{'-' if value is None else format(value, '.4g')}", file=sys.stderr)


if "snakemake" in globals():
    from pathlib import Path

    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        main(dict(sm.params.cfg), sm.input.prepared, Path(sm.output.metrics).parent,
             sm.params.checkpoint, sm.threads, sm.params.tensorboard)
else:
    import yaml

    cfg_path, prepared, out_dir, checkpoint, *threads = sys.argv[1:6]
    with open(cfg_path) as fh:
        main(yaml.safe_load(fh), prepared, out_dir, checkpoint, *map(int, threads))
