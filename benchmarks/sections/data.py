"""Sections `data` and `train`: images/s of the device-resident path and of the DataLoader
path with 0/2/4 workers, data only (load + normalise + augment) and in full training steps."""

from __future__ import annotations

import time
from pathlib import Path

from sections.common import Settings, Table, base_config, path_cases, quiet, row_value, train_steps


def bench_data(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """Images/s of each data path without the model: load + normalise (+ augment) each batch
    through the Trainer's own code; the paths take turns, epoch by epoch, so that load from
    other processes on a shared host hits them alike."""
    import torch

    from hpstudy.seeding import augment_generator
    from hpstudy.train import Trainer

    trainers = {}
    for case, over in path_cases(s):
        cfg = base_config(s, epochs=1, **over)
        trainers[case] = Trainer(
            cfg, prepared, work / f"data-{case}", work / f"data-{case}.pt", quiet
        )

    def one_epoch(trainer, epoch):
        gen, n = augment_generator(trainer.cfg.seed, epoch, trainer.device), 0
        for x_u8, y in trainer.train_loader.epoch(epoch):
            x, _ = trainer.augment(trainer.task.inputs(x_u8), trainer.task.targets(y), gen)
            n += len(x)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return n

    first, seconds, images = {}, dict.fromkeys(trainers, 0.0), dict.fromkeys(trainers, 0)
    for case, trainer in trainers.items():  # warm-up: starts the DataLoader workers
        t0 = time.perf_counter()
        one_epoch(trainer, 0)
        first[case] = time.perf_counter() - t0
    epoch, t_start = 1, time.perf_counter()
    while time.perf_counter() - t_start < s.data_seconds * len(trainers) or epoch < 4:
        for case, trainer in trainers.items():
            t0 = time.perf_counter()
            images[case] += one_epoch(trainer, epoch)
            seconds[case] += time.perf_counter() - t0
        epoch += 1
    for case, trainer in trainers.items():
        table.add(
            "data",
            case,
            "data_only_images_per_s",
            images[case] / seconds[case],
            "img/s",
            f"{epoch - 1} epochs of {trainer.n_train} (load+normalise"
            f"{'+' + '+'.join(s.augment) if s.augment else ''}); "
            f"first epoch {first[case]:.2f} s",
        )
    del trainers, trainer

    device_rate = row_value(table, "data", "device", "data_only_images_per_s")
    for case, _ in path_cases(s)[1:]:
        other = row_value(table, "data", case, "data_only_images_per_s")
        table.add(
            "data",
            f"device_vs_{case}",
            "data_only_speedup",
            device_rate / other,
            "x",
            "target >= 10 vs dataloader_w2 on CPU" if case == "dataloader_w2" else "",
        )


def bench_train(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """Images/s of each data path in full training steps of the real Trainer loop."""
    from hpstudy.train import Trainer

    n_train = train_steps(s, prepared) * s.batch_size
    for case, over in path_cases(s):
        cfg = base_config(s, epochs=s.train_epochs, train_subset=n_train, **over)
        out = work / f"train-{case}"
        trainer = Trainer(cfg, prepared, out, out / "ck.pt", quiet)
        trainer.fit()
        steady = [r["samples_per_s"] for r in trainer.state.history[1:]]
        table.add(
            "train",
            case,
            "train_images_per_s",
            max(steady),
            "img/s",
            f"best of {len(steady)} epochs x {n_train} images after a warm-up epoch",
        )
        del trainer
