"""Fused seeds: the k seeds of one configuration trained as one stacked model (issue 23).

A small model leaves most of a GPU idle; its time goes to kernel launches and host work per
step. All seeds of a configuration have the same shapes, so they can run as one model:
`torch.vmap` over `torch.func.functional_call` evaluates k copies of the network in one
pass (a convolution becomes one grouped convolution), one forward and one backward per
step for all k seeds.

Each seed stays its own run. A `Trainer` is built per seed exactly as for a separate run
(its seed's initial weights, training subset, optimizer, scheduler, diagnostics, files),
then its parameters and buffers become views into stacked tensors [k, ...]: the vmapped
forward reads and updates those (BatchNorm's running statistics in place, per seed), the
backward fills the stacked gradient, and each seed gets its slice of it as `.grad`. From
there every seed goes through the Trainer's own code: its `optimizer_step` (gradient
clipping by its own norm, diagnostics, its own optimizer, whose elementwise update on a
slice equals the update of a separate run), its `end_epoch` (its own scheduler stepped on
its own validation loss, so plateau learning rates differ per seed; history row, early
stopping, checkpoint, TensorBoard, progress) and its `finish` (test metrics, metrics.json).

- Data order and augmentation: each seed draws its batch from its own loader and its own
  augmentation generator (hpstudy.seeding), and the k batches are stacked [k, B, ...].
  CutMix/MixUp draw from torch's global RNG: it is swapped to the seed's own state around
  the seed's draws, and each checkpoint keeps the seed's own state.
- A seed that stops (patience ran out, or its loss stopped being finite) finishes at once:
  its parameters get storage of their own, it is tested and written, and the others are
  restacked without it, so it is never updated again (the optimizer state belongs to the
  seed, not to the stack). A diverged seed is noticed at the same steps as in a separate
  run (every 25 optimizer steps and at the end of an epoch).
- Checkpoints: one per seed, in the separate runs' format, written by the seed's Trainer
  (every epoch, and at the next optimizer step after SIGTERM); a rerun resumes every seed
  from its own, so a resumed fused run equals an uninterrupted one.
- Time: the seeds share the wall time of the fused steps; each seed's `epoch_time_s` is its
  share (the epoch's time / seeds training), so `samples_per_s` is the group's throughput
  per run and cost sums over seeds stay right. metrics.json says `fused_seeds: k`.

Not fused (the seeds train one after the other, and the job's log says why): models that
draw random numbers inside their forward (dropout: under vmap their draws cannot follow
each seed's own torch seed), `compile` (not tried with vmap), fp16 with its GradScaler on
CUDA (one loss scale would skip every seed's step when one seed overflows), the DataLoader
path (what the data_loading group times), and seeds whose checkpoints stand at different
points (left by separate runs). Tested against separate runs in tests/test_fused.py;
measured by benchmarks/fused_seeds.py.
"""

from __future__ import annotations

import copy
import gc
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from hpstudy import attempts
from hpstudy.checkpoint import FORMAT
from hpstudy.config import TrainConfig, device_effects
from hpstudy.device import attempt_resources, pick_device, synced_clock
from hpstudy.failures import Interrupted, stop_signals_to
from hpstudy.loaders import DeviceLoader
from hpstudy.models import build_model
from hpstudy.prepare import load_prepared
from hpstudy.train import DIVERGENCE_CHECK_EVERY, Trainer, cleanup, write_config


class CannotFuse(Exception):
    """These seeds cannot train as one model; the message says why."""


# modules whose forward draws from torch's global RNG in training mode
RANDOM_MODULES = (torch.nn.modules.dropout._DropoutNd,)


def why_not_fused(
    cfgs: list[TrainConfig],
    checkpoints: list[Path],
    manifest: dict[str, Any],
    device: torch.device,
) -> str | None:
    """Why these seeds of one configuration cannot train as one stacked model, or None."""
    cfg = cfgs[0]
    if cfg.compile:
        return "compile: true (torch.compile of the vmapped model is not supported here)"
    if device_effects(cfg, device.type)["mixed_precision"] and cfg.amp_dtype == "fp16":
        return (
            "amp_dtype: fp16 on CUDA (one GradScaler would skip every seed's step when one "
            "seed's gradients overflow; bf16 needs no scaler)"
        )
    if cfg.data_path == "dataloader":
        return "data_path: dataloader (the path the data_loading group times, one per run)"
    channels, size = manifest["image_shape"][0], manifest["image_shape"][1]
    outputs = 1 if manifest["task"] == "regression" else int(manifest["num_classes"])
    try:
        with torch.device("meta"):
            model = build_model(cfg.model, channels, outputs, cfg.upsample_size or size)
    except Exception as err:  # noqa: BLE001 - training it will fail with its own note
        return f"model {cfg.model} cannot be built ({err})"
    random = [name for name, m in model.named_modules() if isinstance(m, RANDOM_MODULES)]
    if random:
        return (
            f"model {cfg.model} draws random numbers in its forward ({', '.join(random)}); "
            "inside one vmapped model they cannot follow each seed's own torch seed"
        )
    sha = manifest["content_sha256"]
    points = {resume_point(ck, one, sha) for ck, one in zip(checkpoints, cfgs, strict=True)}
    if len(points) > 1:
        return (
            "their checkpoints stand at different points (epoch, batch: "
            f"{sorted(points)}), left by separate runs"
        )
    return None


def resume_point(path: Path, cfg: TrainConfig, prepared_sha256: str) -> tuple[int, int]:
    """(epoch, batch) where a seed would resume from its checkpoint; (0, 0) without one
    that hpstudy.checkpoint.load would accept."""
    if not Path(path).is_file():
        return (0, 0)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable: the run starts afresh
        return (0, 0)
    if (
        ck.get("format") != FORMAT
        or ck.get("config_hash") != cfg.hash()
        or ck.get("prepared_sha256") != prepared_sha256
    ):
        return (0, 0)
    return (int(ck["state"]["epoch"]), int(ck["state"]["batch"]))


class FusedTrainer:
    """The seeds `cfgs` (one configuration, its seeds) trained as one stacked model;
    `fit()` returns each seed's metrics. Arguments are per seed, in the order of `cfgs`."""

    def __init__(
        self,
        cfgs: list[TrainConfig],
        prepared: str | Path | None,
        out_dirs: list[Path],
        checkpoints: list[Path],
        log=None,
        data: dict[str, Any] | None = None,
        tensorboards: list[Path | None] | None = None,
    ):
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        data = data if data is not None else load_prepared(prepared)  # once for all seeds
        tensorboards = tensorboards or [None] * len(cfgs)
        self.trainers: list[Trainer] = []
        for cfg, out_dir, ck, tb in zip(cfgs, out_dirs, checkpoints, tensorboards, strict=True):
            write_config(cfg, out_dir)
            t = Trainer(cfg, prepared, out_dir, ck, seed_log(self.log, cfg.seed), data, (), tb)
            self._share_data(t)
            t.extra_metrics["fused_seeds"] = len(cfgs)
            self.trainers.append(t)
        first = self.trainers[0]
        self.device, self.task, self.cfg = first.device, first.task, first.cfg
        self.amp, self.amp_dtype = first.amp, first.amp_dtype
        # the network's structure without weights: functional_call fills in each seed's
        self.base = copy.deepcopy(first.model).to("meta")
        self.param_of = {t: dict(t.model.named_parameters()) for t in self.trainers}
        self.buffer_of = {t: dict(t.model.named_buffers()) for t in self.trainers}
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.active: list[Trainer] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.stop_signal: int | None = None

    def _share_data(self, t: Trainer) -> None:
        """Let seeds share the device copies of identical splits (the test set always; the
        training and validation sets unless each seed draws its own `train_subset`); a
        training loader differs only in its seed, which orders its epochs."""
        if not self.trainers:
            return
        first = self.trainers[0]
        t.test_loader = first.test_loader
        if t.cfg.train_subset is None and isinstance(first.train_loader, DeviceLoader):
            t.val_loader = first.val_loader
            t.train_loader = copy.copy(first.train_loader)  # shares the images, not the seed
            t.train_loader.seed = t.cfg.seed
        elif t.has_val:
            t.val_loader = first.val_loader

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict[int, dict[str, Any]]:
        """Train every seed to its end; on SIGTERM/SIGINT/SIGUSR1 save every unfinished
        seed's checkpoint and raise `Interrupted`."""
        with stop_signals_to(self._on_signal):
            return self._fit()

    def _fit(self) -> dict[int, dict[str, Any]]:
        self.wall_start = time.time()
        aug_states, self.rng = {}, {}
        for t in self.trainers:
            aug_states[t] = t.begin_run()  # resumes; restores the seed's torch RNG state
            self.rng[t] = torch.get_rng_state()
        points = {(t.state.epoch, t.state.batch) for t in self.trainers}
        if len(points) > 1:  # why_not_fused checks this before; a guard for direct callers
            raise CannotFuse(f"the seeds resume at different points {sorted(points)}")
        self.log(
            f"fused: {len(self.trainers)} seeds "
            f"({', '.join(str(t.cfg.seed) for t in self.trainers)}) as one stacked model"
        )
        self.active = list(self.trainers)
        self._restack()
        while self.active and self.active[0].state.epoch < self.cfg.epochs:
            epoch = self.active[0].state.epoch
            gens = {}
            for t in self.active:  # each seed's own global RNG stream and generator
                torch.set_rng_state(self.rng[t])
                gens[t] = t.begin_epoch(epoch, aug_states.pop(t, None))
                self.rng[t] = torch.get_rng_state()
            t0 = synced_clock(self.device)
            self._train_epoch(epoch, gens, t0)
            if not self.active:
                break
            elapsed = synced_clock(self.device) - t0
            for t in self.active:
                t.state.epoch_time += elapsed / len(self.active)  # its share of the steps
            ended = []
            for t, val in zip(list(self.active), self.evaluate(), strict=True):
                torch.set_rng_state(self.rng[t])  # its checkpoint keeps its own RNG state
                outcome = t.end_epoch(epoch, val, t0)
                if outcome is not None:
                    ended.append((t, outcome))
            for t, outcome in ended:
                self._end(t, outcome, epoch + 1)
            if ended and self.active:
                self._restack()
            if self.stop_signal is not None and self.active and epoch + 1 < self.cfg.epochs:
                raise Interrupted(f"stopped after epoch {epoch + 1}")
        for t in list(self.active):
            self._end(t, None, self.cfg.epochs)
        return self.results

    def _train_epoch(self, epoch: int, gens: dict[Trainer, torch.Generator], t0: float) -> None:
        """The optimizer steps of one epoch for every active seed, in step: micro-batches of
        `grad_accum_steps` (each seed its own batch), one forward and backward for all, then
        each seed's own clipped step. A seed whose training loss stops being finite is
        finished as diverged; a signal mid-epoch saves every seed and raises `Interrupted`."""
        cfg, dev = self.cfg, self.device
        ts = list(self.active)
        n_batches, accum = len(ts[0].train_loader), cfg.grad_accum_steps
        loss_sums = torch.tensor(
            [t.state.loss_sum for t in ts], dtype=torch.float64, device=dev
        )  # each seed's epoch loss sum, on the device
        batches = {t: iter(t.train_loader.epoch(epoch, t.state.batch)) for t in ts}
        swap_rng = ts[0].augment.mix is not None  # CutMix/MixUp draw from the global RNG
        b = ts[0].state.batch
        while b < n_batches:
            micro_steps = min(accum, n_batches - b)
            for _ in range(micro_steps):
                xs, ys = [], []
                for t in ts:
                    if swap_rng:
                        torch.set_rng_state(self.rng[t])
                    x, y, n = t.next_batch(batches[t], gens[t])
                    if swap_rng:
                        self.rng[t] = torch.get_rng_state()
                    xs.append(x)
                    ys.append(y)
                with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.amp):
                    out = self.forward(torch.stack(xs))
                losses = torch.vmap(self.task.loss)(out, torch.stack(ys))
                (losses / micro_steps).sum().backward()
                loss_sums += losses.detach().double() * n
                for t in ts:
                    t.state.seen += n
                b += 1
                cleanup(cfg.cleanup_every, b, dev)
            self._hand_out_grads()
            for t in ts:
                t.optimizer_step(epoch)
            for stacked in self.params.values():
                stacked.grad = None
            if ts[0].state.step % DIVERGENCE_CHECK_EVERY == 0 or b == n_batches:
                finite = torch.isfinite(loss_sums).tolist()
                if not all(finite):
                    for t, ok, total in zip(ts, finite, loss_sums.tolist(), strict=True):
                        if not ok:
                            t.log(
                                f"training loss is not finite at epoch {epoch + 1} "
                                f"(by batch {b}): diverged"
                            )
                            t.state.loss_sum = total
                            self._end(t, "diverged", epoch + 1)
                    keep = [i for i, ok in enumerate(finite) if ok]
                    ts, loss_sums = [ts[i] for i in keep], loss_sums[keep]
                    if not ts:
                        return
                    self._restack()
            if self.stop_signal is not None and b < n_batches:
                elapsed = time.perf_counter() - t0
                for t, total in zip(ts, loss_sums.tolist(), strict=True):
                    t.state.batch, t.state.loss_sum = b, total
                    t.state.epoch_time += elapsed / len(ts)
                    torch.set_rng_state(self.rng[t])
                    t.save_checkpoint(gens[t])
                raise Interrupted(f"stopped at epoch {epoch + 1}, batch {b}")
        for t, total in zip(ts, loss_sums.tolist(), strict=True):
            t.state.loss_sum = total

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Every active seed's model on its inputs: x is [k, B, ...], or [B, ...] that all
        seeds see (`shared`); returns [k, B, outputs]. randomness="error": a model drawing
        random numbers inside fails loudly instead of differing from separate runs."""

        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        vmapped = torch.vmap(one, in_dims=(0, 0, None if shared else 0), randomness="error")
        return vmapped(self.params, self.buffers, x)

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """The validation metrics of every active seed, in eval mode: one pass per batch for
        all seeds, on inputs they share unless each seed validates on its own subset."""
        ts = self.active
        shared = all(t.val_loader is ts[0].val_loader for t in ts)
        loaders = [ts[0].val_loader] if shared else [t.val_loader for t in ts]
        outs, ys = [], [[] for _ in loaders]
        self.base.eval()
        for batch in zip(*(loader.epoch(0) for loader in loaders), strict=True):
            if shared:
                x = self.task.inputs(batch[0][0])
            else:
                x = torch.stack([self.task.inputs(x_u8) for x_u8, _ in batch])
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outs.append(self.forward(x, shared).to(torch.get_default_dtype()))
            for i, (_, y) in enumerate(batch):
                ys[i].append(y)
        self.base.train()
        out, y = torch.cat(outs, dim=1), [torch.cat(parts) for parts in ys]
        return [t.task.metrics(out[j], y[0 if shared else j]) for j, t in enumerate(ts)]

    # -- the stack ---------------------------------------------------------------------------
    def _restack(self) -> None:
        """Stack the active seeds' parameters and buffers into fresh [k, ...] tensors and make
        each seed's own tensors views into them (its optimizer state stays with it)."""
        ts = self.active
        for name in self.param_of[ts[0]]:
            stacked = torch.stack([self.param_of[t][name].detach() for t in ts])
            for t, view in zip(ts, stacked.unbind(0), strict=True):
                self.param_of[t][name].data = view
            self.params[name] = stacked.requires_grad_()
        for name in self.buffer_of[ts[0]]:
            stacked = torch.stack([self.buffer_of[t][name] for t in ts])
            for t, view in zip(ts, stacked.unbind(0), strict=True):
                self.buffer_of[t][name].data = view
            self.buffers[name] = stacked

    def _hand_out_grads(self) -> None:
        """Each seed's slice of the stacked gradients becomes its parameters' `.grad`."""
        for name, stacked in self.params.items():
            if stacked.grad is None:  # a parameter the loss does not reach
                grads = [None] * len(self.active)
            else:
                grads = stacked.grad.unbind(0)
            for t, grad in zip(self.active, grads, strict=True):
                self.param_of[t][name].grad = grad

    def _end(self, t: Trainer, outcome: str | None, epoch: int) -> None:
        """Finish seed `t` (outcome None: all epochs, "stopped": patience, "diverged"): its
        tensors get storage of their own, so testing its best weights leaves the stack alone;
        it is tested and written like a separate run and leaves the group."""
        for tensor in (*self.param_of[t].values(), *self.buffer_of[t].values()):
            tensor.data = tensor.data.clone()
        self.results[t.cfg.seed] = t.finish(
            "diverged" if outcome == "diverged" else "ok",
            epoch if outcome == "diverged" else None,
            outcome == "stopped",
            self.wall_start,
        )
        self.active.remove(t)

    # -- plumbing ----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        self.log(
            f"received signal {signum}: saving every seed's checkpoint at the next optimizer step"
        )


def seed_log(log, seed: int):
    """The log of one seed in a fused group: its lines start with `seed N:`."""
    return lambda msg: log(f"seed {seed}: {msg}")


def run_fused(
    cfgs: list[TrainConfig],
    prepared: str | Path,
    keep_dir: Path,
    log,
    data: dict[str, Any],
    job_log: str | Path | None = None,
    tensorboard: str | Path | None = None,
) -> dict[int, dict[str, Any]]:
    """Train the seeds `cfgs` of one configuration as one model in `keep_dir` (as
    hpstudy.seeds lays it out) and return the metrics of the seeds that finished. Where
    they cannot be fused, or fused training fails (out of memory, an error), the log says
    why and the seeds not finished are left to train one after the other (they resume from
    their checkpoints). `Interrupted` (SIGTERM) is raised after every checkpoint is saved."""
    seeds = [c.seed for c in cfgs]
    checkpoints = [keep_dir / f"seed{s}.pt" for s in seeds]
    device = pick_device()
    why = why_not_fused(cfgs, checkpoints, data["manifest"], device)
    if why is not None:
        log(f"fuse_seeds: seeds {seeds} train one after the other: {why}")
        return {}
    trainer = None
    resources = {**attempt_resources(), "fused_seeds": len(cfgs)}
    try:
        with attempts.track_all(checkpoints, job_log, resources):
            trainer = FusedTrainer(
                cfgs,
                prepared,
                [keep_dir / f"seed{s}" for s in seeds],
                checkpoints,
                log,
                data,
                [Path(tensorboard) / f"seed{s}" if tensorboard else None for s in seeds],
            )
            return trainer.fit()
    except Interrupted:
        raise
    except Exception as err:  # noqa: BLE001 - the seeds still train, one after the other
        done = dict(trainer.results) if trainer is not None else {}
        log(
            f"fuse_seeds: fused training of seeds {seeds} failed ({type(err).__name__}: "
            f"{(str(err).strip().splitlines() or [''])[0][:300]}); the unfinished ones "
            "train one after the other, each from its last checkpoint"
        )
        del trainer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return done
