"""One training run: the loop, read top to bottom (nanoGPT style).

A run checkpoints atomically after every epoch, and at the next optimizer step after a
SIGTERM (what PBS and Slurm send before a walltime kill), to a path that is not a Snakemake
output. A rerun with the same config resumes from it exactly: model, optimizer, scheduler,
scaler, early-stopping state, diagnostics and every RNG state are restored, so the resumed
run's metrics equal an uninterrupted run's on CPU. A checkpoint of another config (its
config hash differs) is never resumed.

The loop's parts live beside it, each in its own module: what the seed decides (seeding),
the batches (loaders), inputs, targets, loss and metrics (task), optimizer and learning-rate
schedule (optim), loop state and checkpoints (checkpoint), history rows, log lines, the
progress file and metrics.json (progress), failure notes (failures), TensorBoard events
(tensorboard). All seeds of one configuration, one after the other: hpstudy.seeds.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hpstudy import checkpoint as ckpt
from hpstudy.atomic import write_csv, write_json, write_text
from hpstudy.augment import Augmenter
from hpstudy.checkpoint import RunState
from hpstudy.config import TrainConfig, device_effects
from hpstudy.device import pick_device, synced_clock
from hpstudy.diagnostics import Diagnostics, job_environment
from hpstudy.failures import (
    Interrupted,
    RunFailed,
    describe_failure,
    failure_note_path,
    is_out_of_memory,
    stop_signals_to,
    write_failure_note,
)
from hpstudy.loaders import make_loader
from hpstudy.models import build_model, count_parameters, flops_per_sample
from hpstudy.optim import make_optimizer, make_scheduler, step_scheduler
from hpstudy.prepare import load_prepared, run_split
from hpstudy.progress import (
    epoch_line,
    history_row,
    progress_path,
    run_metrics,
    test_line,
    write_history,
    write_progress,
)
from hpstudy.seeding import augment_generator, epoch_seed, seed_everything, training_subset
from hpstudy.task import Task
from hpstudy.tensorboard import RunWriter

# Optimizer steps between host synchronisations that look at the loss (divergence); the
# loss sums stay on the device in between. Also checked at the end of every epoch.
DIVERGENCE_CHECK_EVERY = 25

# Callbacks of every Trainer in this process (objects with on_train_start(trainer) and/or
# on_epoch_end(trainer, row=...)): the benchmark registers one before running the real train
# script; a Trainer's own come from its `callbacks` argument.
CALLBACKS: list[Any] = []


class Trainer:
    """One run of `cfg` (its seed included) on a prepared dataset: __init__ builds what the
    run needs (data, model, optimizer, schedule), `fit()` trains, tests and writes it."""

    def __init__(
        self,
        cfg: TrainConfig,
        prepared: str | Path | None,
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
        self.device = dev = pick_device()
        if dev.type == "cuda":  # fixed input shapes: pick conv kernels once
            torch.backends.cudnn.benchmark = True
        effects = device_effects(cfg, dev.type)  # what the report says was ignored
        seed_everything(cfg.seed)  # before the model is built: its initial weights
        data = data if data is not None else load_prepared(prepared)  # shared by the seeds
        # the prepared split, or with `split: {seed: per_run}` this seed's own
        split, self.manifest = run_split(data, cfg.seed)
        images, targets = data["images"], data["targets"]
        train_idx = torch.from_numpy(training_subset(split["train"], cfg.train_subset, cfg.seed))
        # No validation hold-out (e.g. CIFAR-10 trained on all 50,000 images): the "val"
        # columns are the training set's, nothing is selected on them, and the test metrics
        # come from the final weights (the study loader requires patience: null for such
        # splits).
        self.has_val = len(split["val"]) > 0
        val_idx = torch.from_numpy(split["val"]) if self.has_val else train_idx
        test_idx = torch.from_numpy(split["test"])
        self.n_train = len(train_idx)
        self.memory_format = (
            torch.channels_last if effects["channels_last"] else torch.contiguous_format
        )
        self.task = task = Task(cfg, self.manifest, dev, self.memory_format)
        self.train_loader = make_loader(cfg, images, targets, train_idx, dev, shuffle=True)
        eval_batch = max(cfg.batch_size, 256)
        self.val_loader = make_loader(cfg, images, targets, val_idx, dev, False, eval_batch)
        self.test_loader = make_loader(cfg, images, targets, test_idx, dev, False, eval_batch)
        channels, size = self.manifest["image_shape"][0], self.manifest["image_shape"][1]
        model = build_model(cfg.model, channels, task.outputs, cfg.upsample_size or size)
        self.model = model.to(dev).to(memory_format=self.memory_format)
        example = task.inputs(images[train_idx[:2]].to(dev))
        self.flops = flops_per_sample(self.model, example)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer = make_optimizer(cfg, self.model)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.amp = effects["mixed_precision"]
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and cfg.amp_dtype == "fp16")
        self.augment = Augmenter(
            cfg, task.kind, task.num_classes, mean=task.norm_mean, std=task.norm_std
        )
        self.diag = Diagnostics(self.model, cfg.diagnostics_every, cfg.effective_batch_size)
        self.state = RunState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stop_signal: int | None = None
        self.extra_metrics: dict[str, Any] = {}  # e.g. fused_seeds (hpstudy.fused)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the end; on SIGTERM/SIGINT/SIGUSR1 save and raise `Interrupted`."""
        with stop_signals_to(self._on_signal):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg, wall_start = self.cfg, time.time()
        aug_state = self.begin_run()
        st = self.state
        status, diverged_epoch, stopped_early = "ok", None, False
        while st.epoch < cfg.epochs:
            epoch = st.epoch
            gen = self.begin_epoch(epoch, aug_state)
            aug_state = None
            t0 = synced_clock(self.device)
            if not self._train_epoch(epoch, gen, t0):
                status, diverged_epoch = "diverged", epoch + 1
                break
            st.epoch_time += synced_clock(self.device) - t0
            ended = self.end_epoch(epoch, self.evaluate(self.val_loader), t0)
            if ended == "diverged":
                status, diverged_epoch = "diverged", epoch + 1
                break
            if ended == "stopped":
                stopped_early = True
                break
            if self.stop_signal is not None and st.epoch < cfg.epochs:
                raise Interrupted(f"stopped after epoch {epoch + 1}")
        return self.finish(status, diverged_epoch, stopped_early, wall_start)

    # The parts of _fit that a fused trainer (hpstudy.fused: k seeds as one stacked model)
    # calls per seed, so that both write the same files from the same code.
    def begin_run(self) -> torch.Tensor | None:
        """Resume if a checkpoint exists, say what trains, open TensorBoard and the progress
        file; returns the augmentation RNG state of an epoch resumed mid-way (else None)."""
        aug_state = self.resume()
        self.log(
            f"training {self.cfg.model} on {self.device} ({self.n_train} train samples, "
            f"{len(self.train_loader)} batches/epoch, {count_parameters(self.model):,} "
            "parameters)"
        )
        self.callback("on_train_start")
        self.tb, self.job, self.walls = RunWriter(self.tensorboard), job_environment(), []
        write_progress(
            self.checkpoint, self.state, self.cfg.epochs, self.task.primary, self.job, self.walls
        )
        return aug_state

    def begin_epoch(self, epoch: int, aug_state: torch.Tensor | None) -> torch.Generator:
        """The epoch's augmentation generator; a fresh epoch also reseeds torch's global RNG
        and zeroes the running sums (an epoch resumed mid-way keeps its checkpoint's)."""
        cfg, st = self.cfg, self.state
        gen = augment_generator(cfg.seed, epoch, self.device)
        if st.batch == 0:
            torch.manual_seed(epoch_seed(cfg.seed, epoch))
            self.diag.reset_epoch()
            st.start_epoch()
        elif aug_state is not None:
            gen.set_state(aug_state.to(gen.device) if gen.device.type == "cpu" else aug_state.cpu())
        return gen

    def end_epoch(self, epoch: int, val: dict[str, float], t0: float) -> str | None:
        """After the epoch's training (from `t0`) and validation (`val`): schedule, history,
        early-stopping bookkeeping, log line, checkpoint, TensorBoard, progress. Returns
        "diverged" (validation loss not finite), "stopped" (patience ran out) or None."""
        cfg, st = self.cfg, self.state
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
        if not math.isfinite(val["loss"]):
            self.log(f"validation loss is {val['loss']} at epoch {epoch + 1}: diverged")
            return "diverged"
        step_scheduler(self.scheduler, val["loss"])
        row = history_row(st, epoch, val, lr, self.diag.epoch_summary())
        st.history.append(row)
        self.callback("on_epoch_end", row=row)
        improved = st.observe(val["loss"], epoch + 1, cfg.min_delta)
        if improved:
            self.best_weights = self.model_state()
        self.walls.append(time.perf_counter() - t0)  # training + validation of this epoch
        eta = sum(self.walls) / len(self.walls) * (cfg.epochs - epoch - 1)
        self.log(
            epoch_line(row, cfg.epochs, self.task.primary, eta, improved, len(self.walls) == 1)
        )
        st.epoch, st.batch = epoch + 1, 0
        write_history(self.out_dir, st.history)
        self.save_checkpoint()
        self.tb.epoch(row)
        write_progress(self.checkpoint, st, cfg.epochs, self.task.primary, self.job, self.walls)
        # checked before a signal's Interrupted: a run whose patience ran out finishes now
        # (a resumed one would train one epoch more than an uninterrupted one)
        if cfg.patience is not None and st.bad_epochs >= cfg.patience:
            self.log(
                f"early stop: no val_loss improvement > {cfg.min_delta} for "
                f"{cfg.patience} epochs (best epoch {st.best_epoch})"
            )
            return "stopped"
        return None

    def next_batch(self, batches, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The next training batch of `batches`, as model inputs and training targets after
        augmentation, and its sample count."""
        t_data = time.perf_counter()
        x_u8, y_raw = next(batches)
        self.state.data_time += time.perf_counter() - t_data
        x, y = self.augment(self.task.inputs(x_u8), self.task.targets(y_raw), gen)
        return x, y, len(y_raw)

    def _train_epoch(self, epoch: int, gen: torch.Generator, t0: float) -> bool:
        """The optimizer steps of one epoch from `state.batch` on: micro-batches of
        `grad_accum_steps` under autocast, then one clipped step. False when the training
        loss stopped being finite (diverged); raises `Interrupted` after a checkpoint when a
        signal arrived mid-epoch."""
        cfg, dev, st = self.cfg, self.device, self.state
        n_batches, accum = len(self.train_loader), cfg.grad_accum_steps
        # the epoch's loss sum stays on the device: no host sync per step
        loss_sum = torch.tensor(st.loss_sum, dtype=torch.float64, device=dev)
        batches = iter(self.train_loader.epoch(epoch, st.batch))
        b = st.batch  # always the start of an accumulation group
        while b < n_batches:
            micro_steps = min(accum, n_batches - b)  # the last group may be shorter
            for _ in range(micro_steps):
                x, y, n = self.next_batch(batches, gen)
                with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.amp):
                    out = self.forward(x)
                loss = self.task.loss(out, y)
                self.scaler.scale(loss / micro_steps).backward()
                loss_sum += loss.detach().double() * n
                st.seen += n
                b += 1
                cleanup(cfg.cleanup_every, b, dev)
            self.optimizer_step(epoch)
            if (st.step % DIVERGENCE_CHECK_EVERY == 0 or b == n_batches) and not torch.isfinite(
                loss_sum
            ):
                self.log(
                    f"training loss is not finite at epoch {epoch + 1} (by batch {b}): diverged"
                )
                st.loss_sum = float(loss_sum)
                return False
            if self.stop_signal is not None and b < n_batches:
                st.batch, st.loss_sum = b, float(loss_sum)
                st.epoch_time += time.perf_counter() - t0
                self.save_checkpoint(gen)
                raise Interrupted(f"stopped at epoch {epoch + 1}, batch {b}")
        st.loss_sum = float(loss_sum)
        return True

    def optimizer_step(self, epoch: int) -> None:
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

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        """The metrics of one split (`loss` and the task's), in eval mode."""
        self.model.eval()
        outs, ys = [], []
        for x_u8, y in loader.epoch(0):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outs.append(self.forward(self.task.inputs(x_u8)).to(torch.get_default_dtype()))
            ys.append(y)
        self.model.train()
        return self.task.metrics(torch.cat(outs), torch.cat(ys))

    def finish(self, status, diverged_epoch, stopped_early, wall_start) -> dict[str, Any]:
        """Test the kept weights, write history, layers and metrics.json (last: it marks the
        run finished), and remove the checkpoint, progress file and any failure note."""
        st = self.state
        test: dict[str, float] = {}
        if status == "ok":
            if self.best_weights is not None and self.has_val:
                self.model.load_state_dict(self.best_weights)
            test = self.evaluate(self.test_loader)
            self.log(test_line(test, self.task.primary, st.best_epoch))
        write_history(self.out_dir, st.history)
        write_csv(self.out_dir / "layers.csv.gz", self.diag.table())
        metrics = self.extra_metrics | run_metrics(
            cfg=self.cfg,
            state=st,
            task=self.task.kind,
            status=status,
            diverged_epoch=diverged_epoch,
            stopped_early=stopped_early,
            test=test,
            has_val=self.has_val,
            wall_start=wall_start,
            device=self.device,
            model=self.model,
            flops=self.flops,
            n_train=self.n_train,
            prepared_sha256=self.manifest["content_sha256"],
            checkpoint=self.checkpoint,
        )
        self.tb.finish(self.cfg, metrics)
        write_json(self.out_dir / "metrics.json", metrics)  # written last: marks completion
        self.checkpoint.unlink(missing_ok=True)
        progress_path(self.checkpoint).unlink(missing_ok=True)
        failure_note_path(self.checkpoint).unlink(missing_ok=True)  # an earlier attempt's
        return metrics

    # -- checkpoints (format: hpstudy.checkpoint) ------------------------------------------
    def model_state(self) -> dict[str, torch.Tensor]:
        """A copy of the model's state dict in storage of its own: a fused seed's weights are
        views into its group's stacked tensors, which torch.save and deepcopy would copy
        whole (all k seeds)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def save_checkpoint(self, gen: torch.Generator | None = None) -> None:
        """Save everything a resumed run needs; `gen`: the augmentation generator of an
        epoch stopped mid-way."""
        dev = self.device
        payload = ckpt.payload(
            self.cfg,
            self.manifest["content_sha256"],
            model=self.model_state(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler else None,
            scaler=self.scaler.state_dict(),
            best_weights=self.best_weights,
            state=self.state,
            diag=self.diag.state_dict(),
            diag_epoch=self.diag.epoch_state(),
            rng_cuda=torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            rng_aug=gen.get_state() if gen is not None else None,
        )
        ckpt.save(self.checkpoint, payload)

    def resume(self) -> torch.Tensor | None:
        """Restore this run from its checkpoint if one of this config and data exists;
        returns the augmentation RNG state of an epoch stopped mid-way (else None)."""
        ck = ckpt.load(
            self.checkpoint, self.cfg, self.manifest["content_sha256"], self.device, self.log
        )
        if ck is None:
            return None
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.best_weights = ck["best_weights"]
        self.state = st = RunState(**ck["state"])
        self.diag.load_state_dict(ck["diag"])
        self.diag.load_epoch_state(ck["diag_epoch"])
        torch.set_rng_state(ck["rng_cpu"].cpu())
        if ck["rng_cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ck["rng_cuda"].cpu(), self.device)
        st.resumed_at.append([st.epoch, st.batch])
        self.log(f"resumed from {self.checkpoint} at epoch {st.epoch + 1}, batch {st.batch}")
        return ck["rng_aug"]

    # -- plumbing --------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        self.log(f"received signal {signum}: saving a checkpoint at the next optimizer step")

    def callback(self, event: str, **values: Any) -> None:
        """Call `event` (on_train_start, on_epoch_end) on every registered callback: how a
        benchmark or a test observes the loop without parsing its log."""
        for cb in (*CALLBACKS, *self.callbacks):
            hook = getattr(cb, event, None)
            if hook is not None:
                hook(self, **values)


def cleanup(every: int, batch: int, device: torch.device) -> None:
    """`cleanup_every`: gc.collect (and release CUDA's cached blocks) every N batches."""
    if every and batch % every == 0:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def write_config(cfg: TrainConfig, out_dir: str | Path) -> None:
    """The run's resolved config, `out_dir/config.yaml`, written before it trains."""
    import yaml

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_text(Path(out_dir) / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True))


def run(
    cfg: TrainConfig,
    prepared: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path,
    log=None,
    data: dict[str, Any] | None = None,
    tensorboard: str | Path | None = None,
) -> dict[str, Any]:
    """Train one run; returns metrics. Raises `Interrupted` after saving on SIGTERM, and
    leaves a failure note beside the checkpoint when it fails (`RunFailed`: out of memory).
    `tensorboard`: folder for this run's TensorBoard events (None: none written)."""
    write_config(cfg, out_dir)
    trainer = None
    try:
        trainer = Trainer(cfg, prepared, out_dir, checkpoint, log, data, tensorboard=tensorboard)
        return trainer.fit()
    except Interrupted:
        raise
    except Exception as err:  # keep the reason where a partial report can find it
        if trainer is None:  # failed while loading the data or building the model
            reason = describe_failure(err, pick_device(), None)
        else:
            reason = describe_failure(err, trainer.device, trainer.state.epoch)
        write_failure_note(checkpoint, err, reason, cfg.hash())
        if is_out_of_memory(err):
            raise RunFailed(reason) from err
        raise
