"""Section `loop`: training-loop efficiency, forward + backward + optimizer step on a batch
already in memory divided by the real Trainer loop's time per optimizer step (1.0 = no
overhead)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from sections.common import Settings, Table, base_config, quiet, train_steps


def ideal_stepper(trainer):
    """A function timing `steps` forward + backward + optimizer steps of the same model and
    optimizer on one batch already in memory: what a step costs without a loop around it."""
    import torch

    from hpstudy.models import build_model
    from hpstudy.optim import make_optimizer

    cfg, dev = trainer.cfg, trainer.device
    image_shape = trainer.manifest["image_shape"]
    model = build_model(cfg.model, image_shape[0], 1, image_shape[1]).to(dev)
    model = model.to(memory_format=trainer.memory_format)
    optimizer = make_optimizer(cfg, model)
    images = trainer.train_loader.images[: cfg.batch_size]
    x = trainer.task.inputs(images.to(dev))
    y = trainer.task.targets(trainer.train_loader.targets[: cfg.batch_size].to(dev))

    def step():
        with torch.autocast(dev.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
            out = model(x)
        torch.nn.functional.mse_loss(out.float(), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def seconds_per_step(steps: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return (time.perf_counter() - t0) / steps

    step()  # warm-up
    return seconds_per_step


def bench_loop(table: Table, s: Settings, prepared: Path, work: Path) -> None:
    """Efficiency = ideal step time / the real Trainer loop's time per optimizer step.
    Ideal blocks (one epoch's worth of steps) interleave with the loop's epochs: one before
    the first epoch and one after each (run from the Trainer's end-of-epoch log call, after
    the epoch's timing has stopped), so each epoch is compared with the ideal measured just
    before and just after it: load from other processes on a shared host hits both alike."""
    from hpstudy.train import Trainer

    steps = train_steps(s, prepared)
    n_train = steps * s.batch_size  # whole batches only: no short last batch
    cfg = base_config(s, epochs=s.train_epochs, train_subset=n_train, data_path="device")
    out = work / "loop"
    ideal: list[float] = []

    class AfterEpoch:  # called after the epoch's timing has stopped
        @staticmethod
        def on_epoch_end(trainer, row) -> None:
            ideal.append(measure(steps))

    trainer = Trainer(cfg, prepared, out, out / "ck.pt", quiet, callbacks=(AfterEpoch,))
    measure = ideal_stepper(trainer)
    ideal.append(measure(steps))
    trainer.fit()
    loop = [r["epoch_time_s"] / steps for r in trainer.state.history]
    ratios = [(ideal[e] + ideal[e + 1]) / 2 / loop[e] for e in range(1, len(loop))]
    table.add(
        "loop",
        "ideal_step",
        "seconds_per_step",
        statistics.median(ideal),
        "s",
        f"fwd+bwd+{cfg.optimizer} on one in-memory batch of {s.batch_size}; median of "
        f"{len(ideal)} blocks of {steps} steps, one before and one after each epoch",
    )
    table.add(
        "loop",
        "trainer_loop",
        "seconds_per_step",
        statistics.median(loop[1:]),
        "s",
        f"median of {len(loop) - 1} epochs x {steps} steps after a warm-up epoch "
        f"(device path, augment {'+'.join(s.augment) or 'none'}, diagnostics on)",
    )
    table.add(
        "loop",
        "trainer_loop",
        "efficiency",
        statistics.median(ratios),
        "ratio",
        "median over epochs of ideal (mean of the blocks around the epoch) / loop; "
        f"per epoch {', '.join(f'{r:.3f}' for r in ratios)}; 1.0 = no loop overhead; "
        "target >= 0.9 on CPU",
    )
