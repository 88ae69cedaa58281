"""Rule train. CLI: python train.py CONFIG_YAML PREPARED OUT_DIR CHECKPOINT

Exits 143 after saving a checkpoint when stopped by SIGTERM/SIGINT; a rerun resumes.
"""

import sys

from hpstudy.config import TrainConfig
from hpstudy.logs import redirect_to
from hpstudy.train import EXIT_INTERRUPTED, Interrupted, run


def main(cfg_dict, prepared, out_dir, checkpoint, threads=None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        metrics = run(TrainConfig.from_dict(cfg_dict), prepared, out_dir, checkpoint)
    except Interrupted as stop:
        print(f"hpstudy: {stop}; checkpoint saved to {checkpoint}; rerun to resume",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    key = "test_r2" if metrics["task"] == "regression" else "test_accuracy"
    print(f"done: status {metrics['status']} {key} {metrics.get(key)}", file=sys.stderr)


if "snakemake" in globals():
    from pathlib import Path

    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        main(dict(sm.params.cfg), sm.input.prepared, Path(sm.output.metrics).parent,
             sm.params.checkpoint, sm.threads)
else:
    import yaml

    cfg_path, prepared, out_dir, checkpoint = sys.argv[1:5]
    with open(cfg_path) as fh:
        main(yaml.safe_load(fh), prepared, out_dir, checkpoint)
