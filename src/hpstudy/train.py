"""One training run: explicit loop, read top to bottom (nanoGPT style).

A run checkpoints atomically after every epoch, and at the next optimizer step after a
SIGTERM (what PBS and Slurm send before a walltime kill), to a path that is not a Snakemake
output. A rerun with the same config resumes from it exactly: model, optimizer, scheduler,
scaler, early-stopping state, diagnostics and every RNG state are restored, so the resumed
run's metrics equal an uninterrupted run's on CPU. A checkpoint of another config (its
config hash differs) is never resumed.
"""

from __future__ import annotations

import copy
import gc
import math
import os
import platform
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hpstudy import attempts, checkpoint
from hpstudy.atomic import write_csv, write_json, write_text
from hpstudy.augment import Augmenter
from hpstudy.config import TrainConfig, device_effects
from hpstudy.diagnostics import Diagnostics, job_environment
from hpstudy.loaders import make_loader
from hpstudy.logs import duration
from hpstudy.metrics import classification_metrics, primary_metric, regression_metrics
from hpstudy.models import build_model, count_parameters
from hpstudy.prepare import load_prepared
from hpstudy.tensorboard import RunWriter

EXIT_INTERRUPTED = 143  # 128 + SIGTERM: "stopped, resumable"
CHECKPOINT_FORMAT = checkpoint.FORMAT
# Optimizer steps between host synchronisations that look at the loss (divergence); the
# loss sums stay on the device in between. Also checked at the end of every epoch.
DIVERGENCE_CHECK_EVERY = 25


EXIT_OUT_OF_MEMORY = 3  # the run failed for lack of memory; a retry may ask for more


# Callbacks of every Trainer in this process (objects with on_train_start(trainer) and/or
# on_epoch_end(trainer, row=...)): the benchmark registers one before running the real train
# script; a Trainer's own come from its `callbacks` argument.
CALLBACKS: list[Any] = []


class Interrupted(Exception):
    """A termination signal arrived; the checkpoint is saved and the run can resume."""


class RunFailed(Exception):
    """The run cannot finish (out of memory). No metrics.json is written, so Snakemake sees a
    failed job, never a result, and `--retries` may rerun it (same config: the checkpoint's
    config hash is checked); the reason is logged and kept in a failure note."""


def failure_note_path(checkpoint: str | Path) -> Path:
    """`checkpoints/{exp}/seed{N}.failed.json`: outside the outputs, so it survives the
    failed job and a partial report can say why the run is missing."""
    return Path(checkpoint).with_suffix(".failed.json")


def progress_path(checkpoint: str | Path) -> Path:
    """`checkpoints/{exp}/seed{N}.progress.json`: epoch, ETA, resumes and job of a run in
    progress, rewritten every epoch and removed when it finishes (read by hpstudy.status)."""
    return Path(checkpoint).with_suffix(".progress.json")


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError | MemoryError):  # CUDA (and new CPU) allocators
        return True
    text = str(err)  # the CPU allocator raises a plain RuntimeError
    return isinstance(err, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    )


def describe_failure(err: BaseException, trainer: Trainer | None) -> str:
    device = trainer.device if trainer is not None else pick_device()
    where = (
        f"at epoch {trainer.state.epoch + 1}"
        if trainer is not None
        else "while loading the data and building the model"
    )
    first_line = (str(err).strip().splitlines() or [""])[0][:300]
    if not is_out_of_memory(err):
        return f"{type(err).__name__} {where}: {first_line}"
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**20
        memory = (
            f"{torch.cuda.get_device_name(device)}: peak "
            f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocated of "
            f"{total:.0f} MiB"
        )
    else:
        memory = f"CPU: peak resident {peak_memory_mb(device):.0f} MiB"
    return (
        f"out of memory {where} ({memory}; {type(err).__name__}: {first_line}); give the "
        "job more memory (with --retries the profile asks for more on each attempt) or "
        "lower batch_size / upsample_size in the study; a rerun with the same config "
        "resumes from the last epoch's checkpoint"
    )


@dataclass
class RunState:
    """Everything besides module/optimizer state that a resumed run needs."""

    epoch: int = 0  # epoch to run next (or in progress)
    batch: int = 0  # next batch within `epoch`
    step: int = 0  # optimizer steps taken so far
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    loss_sum: float = 0.0  # running sums of the epoch in progress
    seen: int = 0
    epoch_time: float = 0.0
    data_time: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_at: list[list[int]] = field(default_factory=list)  # [epoch, batch] per resume


def pick_device() -> torch.device:
    wanted = os.environ.get("HPSTUDY_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.RMSprop(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    """Stepped once per epoch (`plateau` with the validation loss)."""
    s = torch.optim.lr_scheduler
    if cfg.scheduler == "cosine":
        return s.CosineAnnealingLR(optimizer, T_max=cfg.t_max or cfg.epochs, eta_min=cfg.eta_min)
    if cfg.scheduler == "step":
        return s.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "exponential":
        return s.ExponentialLR(optimizer, gamma=cfg.gamma)
    if cfg.scheduler == "plateau":
        return s.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=cfg.min_lr,
        )
    return None


def input_normalisation(cfg: TrainConfig, manifest: dict[str, Any]) -> tuple[list, list]:
    """Per-channel mean and std for (x/255 - mean)/std: the config's fixed constants (a
    report's published statistics) or the prepared training split's."""
    if cfg.norm_mean is None:
        return list(manifest["mean"]), list(manifest["std"])
    channels = len(manifest["mean"])
    if len(cfg.norm_mean) != channels:
        raise ValueError(
            f"norm_mean={list(cfg.norm_mean)} has {len(cfg.norm_mean)} values but "
            f"the dataset's images have {channels} channel(s); give one per channel"
        )
    return list(cfg.norm_mean), list(cfg.norm_std)


def flops_per_sample(model: torch.nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Forward and forward+backward FLOPs of one sample (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    x = example[:2].detach().clone()
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    forward = counter.get_total_flops()
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    del out
    return {
        "flops_forward_per_sample": forward / len(x),
        "flops_train_per_sample": counter.get_total_flops() / len(x),
    }


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        prepared: str | Path,
        out_dir: str | Path,
        checkpoint: str | Path,
        log=None,
        data: dict[str, Any] | None = None,
        callbacks: tuple = (),
        tensorboard: str | Path | None = None,
    ):
        self.cfg, self.out_dir, self.checkpoint = cfg, Path(out_dir), Path(checkpoint)
        self.callbacks = tuple(callbacks)
        self.tensorboard = tensorboard
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.device = pick_device()
        if self.device.type == "cuda":  # fixed input shapes: pick conv kernels once
            torch.backends.cudnn.benchmark = True
        effects = device_effects(cfg, self.device.type)  # what the report says was ignored
        seed_everything(cfg.seed)
        data = data if data is not None else load_prepared(prepared)  # shared by the seeds
        self.manifest = data["manifest"]
        self.task = self.manifest["task"]
        self.num_classes = int(self.manifest["num_classes"])
        images, targets, split = data["images"], data["targets"], data["split"]
        train_idx = torch.from_numpy(self._train_indices(split["train"]))
        # No validation hold-out (e.g. CIFAR-10 trained on all 50,000 images): the "val"
        # columns are the training set's, nothing is selected on them, and the test metrics
        # come from the final weights (study.py requires patience: null for such splits).
        self.has_val = len(split["val"]) > 0
        val_idx = torch.from_numpy(split["val"]) if self.has_val else train_idx
        test_idx = torch.from_numpy(split["test"])
        self.n_train = len(train_idx)
        if self.task == "regression":  # the model predicts standardised targets
            self.t_mean, self.t_std = self.manifest["target_mean"], self.manifest["target_std"]
        dev = self.device
        norm_mean, norm_std = input_normalisation(cfg, self.manifest)
        self.mean = torch.tensor(norm_mean, device=dev).view(1, -1, 1, 1)
        self.std = torch.tensor(norm_std, device=dev).view(1, -1, 1, 1)
        # (x/255 - mean)/std as one multiply-add: the per-batch input cost of the device path
        self.in_scale, self.in_shift = 1.0 / (255.0 * self.std), -self.mean / self.std
        self.train_loader = make_loader(cfg, images, targets, train_idx, dev, shuffle=True)
        eval_batch = max(cfg.batch_size, 256)
        self.val_loader = make_loader(cfg, images, targets, val_idx, dev, False, eval_batch)
        self.test_loader = make_loader(cfg, images, targets, test_idx, dev, False, eval_batch)
        channels, size = self.manifest["image_shape"][0], self.manifest["image_shape"][1]
        outputs = 1 if self.task == "regression" else self.num_classes
        self.model = build_model(cfg.model, channels, outputs, cfg.upsample_size or size).to(dev)
        self.memory_format = (
            torch.channels_last if effects["channels_last"] else torch.contiguous_format
        )
        self.model = self.model.to(memory_format=self.memory_format)
        example = self._inputs(images[train_idx[:2]].to(dev))
        self.flops = flops_per_sample(self.model, example)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer = make_optimizer(cfg, self.model)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.amp = effects["mixed_precision"]
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and cfg.amp_dtype == "fp16")
        self.augment = Augmenter(cfg, self.task, self.num_classes, mean=norm_mean, std=norm_std)
        self.diag = Diagnostics(self.model, cfg.diagnostics_every, cfg.effective_batch_size)
        self.state = RunState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stop_signal: int | None = None

    # -- data ------------------------------------------------------------------------------
    def _train_indices(self, train: np.ndarray) -> np.ndarray:
        n = self.cfg.train_subset
        if n is None:
            return train
        if n > len(train):
            raise ValueError(f"train_subset={n} exceeds the {len(train)} training samples")
        rng = np.random.default_rng([self.cfg.seed, 7])
        return np.sort(rng.choice(train, size=n, replace=False))

    def _inputs(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.float().mul_(self.in_scale).add_(self.in_shift)
        return x.contiguous(memory_format=self.memory_format)

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return ((y.float() - self.t_mean) / self.t_std).view(-1, 1)
        return y.long()

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return F.mse_loss(out.float(), y)
        return F.cross_entropy(out.float(), y)  # y may be soft labels after CutMix/MixUp

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        return gen.manual_seed(self.cfg.seed * 7919 + epoch)

    # -- checkpoints (hpstudy.checkpoint) ------------------------------------------------
    def save_checkpoint(self, gen: torch.Generator | None = None) -> None:
        checkpoint.save(self, self.checkpoint, gen)

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        self.model.eval()
        outs, ys = [], []
        for x_u8, y in loader.epoch(0):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outs.append(self.forward(self._inputs(x_u8)).float())
            ys.append(y)
        self.model.train()
        out, y = torch.cat(outs), torch.cat(ys)
        if self.task == "regression":
            norm_loss = float(F.mse_loss(out, self._targets(y)))
            pred = out.flatten() * self.t_std + self.t_mean
            return {"loss": norm_loss, **regression_metrics(pred.cpu(), y.float().cpu())}
        return classification_metrics(out.cpu(), y.cpu())

    # -- the loop --------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        self.log(f"received signal {signum}: saving a checkpoint at the next optimizer step")

    def fit(self) -> dict[str, Any]:
        """Train to the end; on SIGTERM/SIGINT/SIGUSR1 save and raise `Interrupted`."""
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            return self._fit()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _fit(self) -> dict[str, Any]:
        cfg, dev = self.cfg, self.device
        wall_start = time.time()
        aug_state = checkpoint.resume(self, self.checkpoint)
        st = self.state
        n_batches = len(self.train_loader)
        accum = cfg.grad_accum_steps
        status, diverged_epoch = "ok", None
        stopped_early = False
        self.log(
            f"training {cfg.model} on {dev} ({self.n_train} train samples, "
            f"{n_batches} batches/epoch, {count_parameters(self.model):,} parameters)"
        )
        self.callback("on_train_start")
        self.tb, job, walls = RunWriter(self.tensorboard), job_environment(), []
        self._progress(job, walls)
        while st.epoch < cfg.epochs:
            epoch = st.epoch
            gen = self._epoch_generator(epoch)
            if st.batch == 0:
                torch.manual_seed(cfg.seed * 104729 + epoch)
                self.diag.reset_epoch()
                st.loss_sum, st.seen, st.epoch_time, st.data_time = 0.0, 0, 0.0, 0.0
            elif aug_state is not None:
                gen.set_state(
                    aug_state.to(gen.device) if gen.device.type == "cpu" else aug_state.cpu()
                )
            aug_state = None
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            # the epoch's loss sum stays on the device: no host sync per step
            loss_sum = torch.tensor(st.loss_sum, dtype=torch.float64, device=dev)
            batches = iter(self.train_loader.epoch(epoch, st.batch))
            b = st.batch  # always the start of an accumulation group
            while b < n_batches:
                micro_steps = min(accum, n_batches - b)  # the last group may be shorter
                for _ in range(micro_steps):
                    t_data = time.perf_counter()
                    x_u8, y_raw = next(batches)
                    st.data_time += time.perf_counter() - t_data
                    x, y = self.augment(self._inputs(x_u8), self._targets(y_raw), gen)
                    with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.amp):
                        out = self.forward(x)
                    loss = self._loss(out, y)
                    self.scaler.scale(loss / micro_steps).backward()
                    loss_sum += loss.detach().double() * len(y_raw)
                    st.seen += len(y_raw)
                    b += 1
                    if cfg.cleanup_every and b % cfg.cleanup_every == 0:
                        gc.collect()
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                self._optimizer_step(epoch)
                if (st.step % DIVERGENCE_CHECK_EVERY == 0 or b == n_batches) and not torch.isfinite(
                    loss_sum
                ):
                    status, diverged_epoch = "diverged", epoch + 1
                    self.log(
                        f"training loss is not finite at epoch {epoch + 1} (by batch {b}): diverged"
                    )
                    break
                if self.stop_signal is not None and b < n_batches:
                    st.batch, st.loss_sum = b, float(loss_sum)
                    st.epoch_time += time.perf_counter() - t0
                    self.save_checkpoint(gen)
                    raise Interrupted(f"stopped at epoch {epoch + 1}, batch {b}")
            st.loss_sum = float(loss_sum)
            if status == "diverged":
                break
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            st.epoch_time += time.perf_counter() - t0
            val = self.evaluate(self.val_loader)
            lr = self.optimizer.param_groups[0]["lr"]
            if not math.isfinite(val["loss"]):
                status, diverged_epoch = "diverged", epoch + 1
                self.log(f"validation loss is {val['loss']} at epoch {epoch + 1}: diverged")
                break
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val["loss"])
            elif self.scheduler is not None:
                self.scheduler.step()
            row = {
                "epoch": epoch + 1,
                "train_loss": st.loss_sum / max(st.seen, 1),
                "val_loss": val["loss"],
                "lr": lr,
                "epoch_time_s": st.epoch_time,
                "data_time_s": st.data_time,
                "samples_per_s": st.seen / st.epoch_time if st.epoch_time > 0 else math.nan,
            }
            row.update({f"val_{k}": v for k, v in val.items() if k != "loss"})
            row.update(self.diag.epoch_summary())
            st.history.append(row)
            self.callback("on_epoch_end", row=row)
            improved = val["loss"] < st.best_val - cfg.min_delta
            if improved:
                st.best_val, st.best_epoch, st.bad_epochs = val["loss"], epoch + 1, 0
                self.best_weights = copy.deepcopy(self.model.state_dict())
            else:
                st.bad_epochs += 1
            metric = (
                f"val_r2 {val['r2']:.4f}"
                if self.task == "regression"
                else f"val_acc {val['accuracy']:.4f}"
            )
            walls.append(time.perf_counter() - t0)  # training + validation of this epoch
            eta = sum(walls) / len(walls) * (cfg.epochs - epoch - 1)
            self.log(
                f"epoch {epoch + 1}/{cfg.epochs} train_loss {row['train_loss']:.4f} "
                f"val_loss {val['loss']:.4f} {metric} lr {lr:.2e} "
                f"{st.epoch_time:.1f}s {row['samples_per_s']:.0f} samples/s "
                f"ETA {duration(eta)}"
                + (" *" if improved else "")
                + (
                    "   (* = new best validation loss; its weights are kept for the test)"
                    if len(walls) == 1
                    else ""
                )
            )
            st.epoch, st.batch = epoch + 1, 0
            self._write_history()
            self.save_checkpoint()
            self.tb.epoch(row)
            self._progress(job, walls)
            if self.stop_signal is not None and st.epoch < cfg.epochs:
                raise Interrupted(f"stopped after epoch {epoch + 1}")
            if cfg.patience is not None and st.bad_epochs >= cfg.patience:
                stopped_early = True
                self.log(
                    f"early stop: no val_loss improvement > {cfg.min_delta} for "
                    f"{cfg.patience} epochs (best epoch {st.best_epoch})"
                )
                break
        return self._finish(status, diverged_epoch, stopped_early, wall_start)

    def _optimizer_step(self, epoch: int) -> None:
        """One optimizer step after a group of micro-batches: unscale, clip, step."""
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.state.step += 1
        self.diag.after_backward(self.state.step, epoch + 1)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.diag.after_step(self.state.step, epoch + 1)
        self.optimizer.zero_grad(set_to_none=True)

    def callback(self, event: str, **values: Any) -> None:
        """Call `event` (on_train_start, on_epoch_end) on every registered callback: how a
        benchmark or a test observes the loop without parsing its log."""
        for cb in (*CALLBACKS, *self.callbacks):
            hook = getattr(cb, event, None)
            if hook is not None:
                hook(self, **values)

    def _progress(self, job: dict[str, Any], walls: list[float]) -> None:
        st, mean = self.state, (sum(walls) / len(walls) if walls else None)
        last = st.history[-1] if st.history else {}
        write_json(
            progress_path(self.checkpoint),
            {
                "epoch": st.epoch,
                "epochs": self.cfg.epochs,
                "best_epoch": st.best_epoch,
                "val_loss": last.get("val_loss"),
                "val_metric": last.get("val_r2" if self.task == "regression" else "val_accuracy"),
                "resumes": len(st.resumed_at),
                "pid": os.getpid(),
                "updated": time.time(),
                "epoch_s": mean,
                "eta_s": mean * (self.cfg.epochs - st.epoch) if mean else None,
                **{k: job.get(k) for k in ("hostname", "job_id", "run_started_at")},
            },
        )

    def _write_history(self) -> None:
        import pandas as pd

        write_csv(self.out_dir / "history.csv", pd.DataFrame(self.state.history))

    def _finish(self, status, diverged_epoch, stopped_early, wall_start) -> dict[str, Any]:
        st, cfg = self.state, self.cfg
        test: dict[str, float] = {}
        if status == "ok":
            if self.best_weights is not None and self.has_val:
                self.model.load_state_dict(self.best_weights)
            test = self.evaluate(self.test_loader)
            weights = (
                f"the best-validation weights of epoch {st.best_epoch}"
                if st.best_epoch > 0
                else "the last weights"
            )
            first = "r2" if self.task == "regression" else "accuracy"  # the primary metric
            self.log(
                " ".join(f"test_{k} {test[k]:.4g}" for k in sorted(test, key=first.__ne__))
                + f" (test set, {weights})"
            )
        self._write_history()
        write_csv(self.out_dir / "layers.csv.gz", self.diag.table())
        train_time = sum(r["epoch_time_s"] for r in st.history)
        samples = sum(r["samples_per_s"] * r["epoch_time_s"] for r in st.history)
        data_time = sum(r["data_time_s"] for r in st.history)
        peak_mb = peak_memory_mb(self.device)
        metrics = {
            "status": status,
            "diverged_epoch": diverged_epoch,
            "task": self.task,
            **{f"test_{k}": v for k, v in test.items()},
            "best_epoch": st.best_epoch if st.best_epoch > 0 else None,
            # which weights were tested: the best validation epoch's, or (no validation
            # hold-out) the final epoch's
            "tested_weights": "best_val" if self.has_val else "final",
            "best_val_loss": st.best_val if math.isfinite(st.best_val) else None,
            "epochs_run": len(st.history),
            "stopped_early": stopped_early,
            "optimizer_steps": st.step,
            "wall_time_s": time.time() - wall_start,
            "train_time_s": train_time,
            "time_per_epoch_s": train_time / len(st.history) if st.history else None,
            "throughput_samples_per_s": samples / train_time if train_time > 0 else None,
            "data_wait_fraction": data_time / train_time if train_time > 0 else None,
            "peak_memory_mb": peak_mb,
            "peak_memory_kind": "cuda_max_allocated"
            if self.device.type == "cuda"
            else "cpu_peak_rss",
            "parameters": count_parameters(self.model),
            "model_size_mb": sum(p.numel() * p.element_size() for p in self.model.parameters())
            / 2**20,
            **self.flops,
            "n_train": self.n_train,
            "resumed_at": st.resumed_at,
            "device": str(self.device),
            "device_name": (
                torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda"
                else platform.processor() or "cpu"
            ),
            "torch_version": torch.__version__,
            "config_hash": cfg.hash(),
            "prepared_sha256": self.manifest["content_sha256"],
            **job_environment(now=wall_start),  # host, batch job id, container image
        }
        metrics.update(attempts.summary(self.checkpoint))  # wall time over every attempt
        metric_key = primary_metric(self.task)
        if metric_key in metrics and peak_mb > 0:
            metrics["memory_efficiency"] = metrics[metric_key] / (peak_mb / 1024)
        self.tb.finish(cfg, metrics)
        write_json(self.out_dir / "metrics.json", metrics)  # written last: marks completion
        self.checkpoint.unlink(missing_ok=True)
        progress_path(self.checkpoint).unlink(missing_ok=True)
        failure_note_path(self.checkpoint).unlink(missing_ok=True)  # an earlier attempt's
        return metrics


def run(
    cfg: TrainConfig,
    prepared: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path,
    log=None,
    data: dict[str, Any] | None = None,
    tensorboard: str | Path | None = None,
) -> dict[str, Any]:
    """Train one run; returns metrics. Raises `Interrupted` after saving on SIGTERM.
    `tensorboard`: folder for this run's TensorBoard events (None: none written)."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    trainer = None
    try:
        trainer = Trainer(cfg, prepared, out_dir, checkpoint, log, data, tensorboard=tensorboard)
        return trainer.fit()
    except Interrupted:
        raise
    except Exception as err:  # keep the reason where a partial report can find it
        reason = describe_failure(err, trainer)
        write_json(
            failure_note_path(checkpoint),
            {
                "status": "failed",
                "reason": reason,
                "error": type(err).__name__,
                "out_of_memory": is_out_of_memory(err),
                "config_hash": cfg.hash(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        if is_out_of_memory(err):
            raise RunFailed(reason) from err
        raise


RUN_FILES = ("config.yaml", "history.csv", "layers.csv.gz", "metrics.json")


def finished_seed(seed_dir: Path, cfg: TrainConfig, content_sha256: str) -> dict | None:
    """The metrics of a seed that finished earlier with this config on this data, or None."""
    import json

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


def _publish(src: Path, dst: Path) -> None:
    """Hard-link (else copy) a finished seed's files into the job's output folder."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        target = dst / name
        target.unlink(missing_ok=True)
        try:
            os.link(src / name, target)
        except OSError:
            shutil.copy2(src / name, target)


def attempt_resources() -> dict[str, Any]:
    """What an attempt runs on, for its record: CPU threads (the job's Snakemake threads,
    set by the train script; else torch's default), the device, and on a GPU the one
    CUDA_VISIBLE_DEVICES names (hpstudy.gpuslots), else its index."""
    device = pick_device()
    gpu = None
    if device.type == "cuda":
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or str(device.index or 0)
    return {"threads": torch.get_num_threads(), "device": device.type, "gpu": gpu}


def run_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    prepared: str | Path,
    out_dir: str | Path,
    keep_dir: str | Path,
    log=None,
    job_log: str | Path | None = None,
    tensorboard: str | Path | None = None,
) -> dict[int, dict[str, Any]]:
    """Train every seed of one configuration in this process, one after the other.

    Each seed trains in `keep_dir/seed{N}/` with its checkpoint `keep_dir/seed{N}.pt`; both
    lie outside the job's declared output `out_dir`, which Snakemake deletes when a job
    fails or is killed. A seed whose results are already in `keep_dir` (same config hash,
    same data) is not trained again, so a rerun after a failure or a walltime kill trains
    only the seeds that had not finished, and a later round with more seeds only the new
    ones. When every seed has finished, their files are linked into `out_dir/seed{N}/`.
    A failing seed (out of memory, an error) does not stop the others; the first failure
    is raised at the end. `Interrupted` (SIGTERM) is raised at once, after its checkpoint.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    keep_dir, out_dir = Path(keep_dir), Path(out_dir)
    data = None
    results: dict[int, dict[str, Any]] = {}
    failures: list[tuple[int, Exception]] = []
    for seed in seeds:
        seed_cfg = TrainConfig.from_dict({**cfg.to_dict(), "seed": int(seed)})
        seed_dir = keep_dir / f"seed{seed}"
        if data is None:
            data = load_prepared(prepared)
        done = finished_seed(seed_dir, seed_cfg, data["manifest"]["content_sha256"])
        if done is not None:
            log(f"seed {seed}: finished earlier ({seed_dir}); not trained again")
            results[seed] = done
            continue
        log(f"seed {seed}: training ({len(results) + len(failures) + 1} of {len(seeds)})")
        ckpt = keep_dir / f"seed{seed}.pt"
        try:
            # every attempt's log and record kept beside the checkpoint (walltime kills too);
            # the output still reaches the job's log (or the console) live
            with attempts.track(ckpt, job_log, attempt_resources()):
                results[seed] = run(
                    seed_cfg,
                    prepared,
                    seed_dir,
                    ckpt,
                    log,
                    data,
                    tensorboard=Path(tensorboard) / f"seed{seed}" if tensorboard else None,
                )
        except Interrupted:
            raise
        except Exception as err:  # noqa: BLE001 - the other seeds still train
            log(f"seed {seed}: failed: {type(err).__name__}: {err}")
            failures.append((seed, err))
    if failures:
        raise failures[0][1]
    for seed in seeds:
        _publish(keep_dir / f"seed{seed}", out_dir / f"seed{seed}")
    return results
