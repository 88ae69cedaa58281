"""Training diagnostics cheap enough to leave on.

Per optimizer step (always): the global gradient norm, kept per epoch for its mean and
coefficient of variation (gradient-norm stability).

Every `every` steps: per-layer mean |grad| (gradient flow) and ||dW|| / ||W|| (relative
weight update), stored in one long table (step, epoch, layer, grad_abs_mean, update_ratio).

Gradient noise scale, the "simple" B_noise of McCandlish et al. (2018, appendix A.1), from
two batch sizes without extra passes: consecutive optimizer steps are paired; with g1, g2 the
two steps' gradients (batch B each) and B_big = 2B,
  |G_small|^2 = (|g1|^2 + |g2|^2) / 2,   |G_big|^2 = |(g1 + g2) / 2|^2
  |G|^2 = (B_big |G_big|^2 - B |G_small|^2) / (B_big - B)
  S     = (|G_small|^2 - |G_big|^2) / (1/B - 1/B_big)
Both estimates are averaged over the epoch's pairs before taking B_noise = S / |G|^2 (the
ratio of means is far less noisy than the mean of ratios). The two gradients of a pair come
from weights one step apart, an approximation that holds while a step changes the weights
little; the gradients are the clipped ones when grad_clip is set. Gradient variance across
batches is reported as S / B (the trace of one step's gradient covariance).
B_small is the effective batch (batch_size x grad_accum_steps): one optimizer step's gradient.

`job_environment()` records where a run ran (host, Slurm/PBS job id and queue, container
image, start time) so the report can state it; queue time is known only where the submitter
exports HPSTUDY_SUBMIT_TIME (Unix seconds; profiles/pbs does for every PBS job), measured to
SLURM_JOB_START_TIME where Slurm sets it, else to the start of the training process.
"""

from __future__ import annotations

import math
import os
import socket
import time

import torch
from torch import nn


class Diagnostics:
    def __init__(self, model: nn.Module, every: int, batch_size: int):
        self.every, self.batch_size = every, batch_size
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.layers = {n for n, p in self.params if p.ndim > 1}  # weights, not biases/BN
        self.rows: list[tuple] = []
        self._before: dict[str, torch.Tensor] = {}
        self.reset_epoch()

    def reset_epoch(self) -> None:
        # per-step values stay on the device (0-d tensors): no host sync per step on GPU
        self.norms: list[torch.Tensor] = []
        self.prev: list[torch.Tensor] | None = None  # first gradient of an open pair
        self.prev_sq: torch.Tensor | float = 0.0
        self.g2_sum: torch.Tensor | float = 0.0
        self.s_sum: torch.Tensor | float = 0.0
        self.pairs = 0
        self.steps = 0

    def epoch_state(self) -> dict:
        """The epoch in progress, for a mid-epoch checkpoint."""
        return {
            "norms": list(self.norms),
            "prev": self.prev,
            "prev_sq": self.prev_sq,
            "g2_sum": self.g2_sum,
            "s_sum": self.s_sum,
            "pairs": self.pairs,
            "steps": self.steps,
        }

    def load_epoch_state(self, state: dict) -> None:
        self.norms, self.prev = list(state["norms"]), state["prev"]
        self.prev_sq, self.g2_sum, self.s_sum = state["prev_sq"], state["g2_sum"], state["s_sum"]
        self.pairs, self.steps = int(state["pairs"]), int(state["steps"])

    @staticmethod
    def _squared_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([n.float() for n in torch._foreach_norm(tensors)]).pow(2).sum()

    @torch.no_grad()
    def after_backward(self, step: int, epoch: int) -> None:
        """Call with complete, unscaled gradients, just before optimizer.step()."""
        grads = [p.grad for _, p in self.params if p.grad is not None]
        if not grads:
            return
        sq = self._squared_norm(grads)
        self.norms.append(sq.sqrt())
        if self.prev is None:
            self.prev, self.prev_sq = [g.detach().float().clone() for g in grads], sq
        else:
            b = self.batch_size
            small = (self.prev_sq + sq) / 2
            torch._foreach_add_(self.prev, [g.float() for g in grads])
            big = self._squared_norm(self.prev) / 4
            self.g2_sum = self.g2_sum + (2 * big - small)  # (2B|G_big|^2 - B|G_small|^2) / B
            self.s_sum = self.s_sum + 2 * b * (small - big)  # (small - big) / (1/B - 1/(2B))
            self.pairs += 1
            self.prev, self.prev_sq = None, 0.0
        self.steps += 1
        if self.every and step % self.every == 0:
            self._before = {
                n: p.detach().float().clone() for n, p in self.params if n in self.layers
            }
            self._grad_abs = {
                n: float(p.grad.abs().mean())
                for n, p in self.params
                if n in self.layers and p.grad is not None
            }

    @torch.no_grad()
    def after_step(self, step: int, epoch: int) -> None:
        if not self._before:
            return
        for name, p in self.params:
            if name in self._before:
                w0 = self._before[name]
                ratio = float((p.detach().float() - w0).norm() / (w0.norm() + 1e-12))
                self.rows.append((step, epoch, name, self._grad_abs.get(name, math.nan), ratio))
        self._before = {}

    def epoch_summary(self) -> dict[str, float]:
        out = {
            "grad_norm_mean": math.nan,
            "grad_norm_cv": math.nan,
            "grad_noise_scale": math.nan,
            "grad_variance": math.nan,
        }
        if not self.norms:
            return out
        norms = torch.stack(self.norms).double().cpu()  # the one host sync per epoch
        out["grad_norm_mean"] = float(norms.mean())
        if len(norms) > 1:
            out["grad_norm_cv"] = float(norms.std() / norms.mean()) if norms.mean() > 0 else 0.0
        if self.pairs:
            g2, s = float(self.g2_sum) / self.pairs, float(self.s_sum) / self.pairs
            out["grad_variance"] = s / self.batch_size
            out["grad_noise_scale"] = s / g2 if g2 > 0 and s >= 0 else math.nan
        return out

    def table(self):
        import pandas as pd

        return pd.DataFrame(
            self.rows, columns=["step", "epoch", "layer", "grad_abs_mean", "update_ratio"]
        )

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [tuple(r) for r in state["rows"]]


PROCESS_START = time.time()  # when the training process imported this module

# Environment variables worth keeping in metrics.json: batch scheduler and container.
JOB_VARS = {
    "slurm_job_id": "SLURM_JOB_ID",
    "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
    "slurm_partition": "SLURM_JOB_PARTITION",
    "pbs_job_id": "PBS_JOBID",
    "pbs_queue": "PBS_QUEUE",
    "container_image": "APPTAINER_CONTAINER",
}


def job_environment(
    env: dict[str, str] | None = None, now: float | None = None
) -> dict[str, object]:
    """Host, scheduler job id/queue, container image and the start/queue time of this job."""
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    out: dict[str, object] = {"hostname": socket.gethostname(), "run_started_at": now}
    for key, var in JOB_VARS.items():
        if env.get(var):
            out[key] = env[var]
    if "container_image" not in out and env.get("SINGULARITY_CONTAINER"):
        out["container_image"] = env["SINGULARITY_CONTAINER"]
    out["job_id"] = out.get("slurm_job_id") or out.get("pbs_job_id")
    # queue time = job start - submission, where the scheduler or the submitter tells us
    try:
        submitted = float(env["HPSTUDY_SUBMIT_TIME"])
        # the job started no later than this process, which trains all its seeds one after
        # the other: a later seed's own start would count the earlier seeds as queue
        started = float(env.get("SLURM_JOB_START_TIME", min(now, PROCESS_START)))
        out["queue_time_s"] = max(0.0, started - submitted)
    except (KeyError, ValueError):
        pass
    return out
