"""Section `gpu` (CUDA only): one bottleneck experiment, the whole study's estimate, k train
jobs sharing the GPU, a ResNet-18 epoch at CIFAR-10's shape."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from sections.common import REPO, Settings, Table, base_config, quiet


def bench_gpu(table: Table, s: Settings, prepared: Path, work: Path, overhead_s: float) -> None:
    import torch

    from hpstudy.device import pick_device
    from hpstudy.train import Trainer

    if pick_device().type != "cuda":
        table.add("gpu", "all", "status", "skipped: no CUDA device")
        return
    name = torch.cuda.get_device_name(0)
    cfg = base_config(s, epochs=s.gpu_epochs, augment=(), mixed_precision=True)
    trainer = Trainer(cfg, prepared, work / "gpu-exp", work / "gpu-exp" / "ck.pt", quiet)
    metrics = trainer.fit()
    table.add(
        "gpu",
        "bottleneck_experiment",
        "train_time",
        metrics["train_time_s"],
        "s",
        f"{name}; batch {s.batch_size} x {s.gpu_epochs} epochs x {trainer.n_train} "
        "train images; bf16; target < 5 s on H100",
    )
    table.add(
        "gpu",
        "bottleneck_experiment",
        "wall_time",
        metrics["wall_time_s"],
        "s",
        "train + per-epoch eval + checkpoints",
    )
    runs = s.gpu_study_experiments * s.gpu_seeds
    estimate = runs * (metrics["wall_time_s"] + overhead_s)
    table.add(
        "gpu",
        "bottleneck_study",
        "estimate_one_at_a_time",
        estimate,
        "s",
        f"{runs} runs x (wall + {overhead_s:.1f} s start-up); target < 600 s on H100",
    )
    _gpu_sharing(table, s, prepared, work)
    _resnet18_epoch(table, s)


def _gpu_sharing(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """k real train jobs at once on the one GPU (what HPSTUDY_JOBS_PER_GPU=k does in the
    local profile) against one at a time: runs per minute, start-up included."""
    import yaml

    cfg = base_config(s, epochs=max(s.gpu_epochs // 5, 1), augment=(), mixed_precision=True)
    cfg_file = work / "share-config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {
        **os.environ,
        "HPSTUDY_DEVICE": "cuda",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0],
    }
    script = REPO / "workflow" / "scripts" / "train.py"
    base_rate = math.nan
    for k in (1, 2, 4):
        t0 = time.perf_counter()
        procs = []
        for i in range(k):
            out = work / f"share-{k}-{i}"
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(script),
                        str(cfg_file),
                        str(prepared),
                        str(out),
                        str(out / "keep"),
                    ],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"train job failed while sharing the GPU:\n{err[-2000:]}")
        rate = k / (time.perf_counter() - t0) * 60
        base_rate = rate if k == 1 else base_rate
        table.add(
            "gpu",
            f"jobs_per_gpu_{k}",
            "runs_per_minute",
            rate,
            "runs/min",
            f"{cfg.epochs}-epoch bottleneck runs incl. start-up; "
            f"{rate / base_rate:.2f}x one at a time",
        )


def _resnet18_epoch(table: Table, s: Settings) -> None:
    """ResNet-18 at CIFAR-10's shape (random data on the device: nothing is downloaded)."""
    import torch

    from hpstudy.models import MODEL_FACTORIES, build_model

    if "resnet18" not in MODEL_FACTORIES:
        table.add("gpu", "resnet18_cifar10", "status", "skipped: no resnet18 model")
        return
    dev, batch, n = torch.device("cuda"), 512, 50_000 if s.mode == "full" else 5_000
    torch.backends.cudnn.benchmark = True
    model = build_model("resnet18", 3, 10, 32).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x_all = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=dev)
    y_all = torch.randint(0, 10, (n,), device=dev)

    def epoch():
        for i in range(0, n, batch):
            x = (x_all[i : i + batch].float() / 255).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y_all[i : i + batch])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(dev)

    epoch()  # warm-up (cudnn autotuning)
    t0 = time.perf_counter()
    epoch()
    table.add(
        "gpu",
        "resnet18_cifar10",
        "epoch_time",
        time.perf_counter() - t0,
        "s",
        f"{n} random 3x32x32 images, batch {batch}, bf16, channels_last",
    )
