"""Training diagnostics cheap enough to leave on.

Per optimizer step (always): the global gradient norm, kept per epoch for its mean and
coefficient of variation (gradient-norm stability).

Every `every` steps: per-layer mean |grad| (gradient flow) and ||dW|| / ||W|| (relative
weight update), stored in one long table (step, epoch, layer, grad_abs_mean, update_ratio).

Gradient noise scale, the "simple" B_noise of McCandlish et al. (2018, appendix A.1):
with |G_small|^2 the mean squared norm of the per-step gradients (batch B) and
|G_big|^2 the squared norm of their epoch mean (batch B*k over k steps),
  |G|^2 = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
  S     = (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)
  B_noise = S / |G|^2
The big batch is built from gradients at slightly different weights within an epoch, an
approximation that is good while the per-epoch change of the weights is small.
Gradient variance across batches is reported as S / B_small (the per-batch variance trace).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Diagnostics:
    def __init__(self, model: nn.Module, every: int, batch_size: int):
        self.every, self.batch_size = every, batch_size
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.layers = [n for n, p in self.params if p.ndim > 1]  # weights, not biases/BN
        self.rows: list[tuple] = []
        self._before: dict[str, torch.Tensor] = {}
        self.reset_epoch()

    def reset_epoch(self) -> None:
        self.norms: list[float] = []
        self.grad_sum: list[torch.Tensor] | None = None
        self.steps = 0

    @torch.no_grad()
    def after_backward(self, step: int, epoch: int) -> None:
        """Call with complete, unscaled gradients, just before optimizer.step()."""
        grads = [p.grad for _, p in self.params if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads)
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(norms))))
        if self.grad_sum is None:
            self.grad_sum = [g.detach().float().clone() for g in grads]
        else:
            torch._foreach_add_(self.grad_sum, [g.float() for g in grads])
        self.steps += 1
        if self.every and step % self.every == 0:
            self._before = {n: p.detach().float().clone() for n, p in self.params
                            if n in self.layers}
            self._grad_abs = {n: float(p.grad.abs().mean()) for n, p in self.params
                              if n in self.layers and p.grad is not None}

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
        out = {"grad_norm_mean": math.nan, "grad_norm_cv": math.nan,
               "grad_noise_scale": math.nan, "grad_variance": math.nan}
        if not self.norms:
            return out
        norms = torch.tensor(self.norms, dtype=torch.float64)
        out["grad_norm_mean"] = float(norms.mean())
        if len(norms) > 1:
            out["grad_norm_cv"] = float(norms.std() / norms.mean()) if norms.mean() > 0 else 0.0
        k, b = self.steps, self.batch_size
        if k > 1 and self.grad_sum is not None:
            small = float((norms**2).mean())
            big = float(sum((g / k).pow(2).sum() for g in self.grad_sum))
            b_big = b * k
            g2 = (b_big * big - b * small) / (b_big - b)
            s = (small - big) / (1 / b - 1 / b_big)
            out["grad_variance"] = s / b
            out["grad_noise_scale"] = s / g2 if g2 > 0 else math.nan
        return out

    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["step", "epoch", "layer", "grad_abs_mean",
                                                "update_ratio"])

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [tuple(r) for r in state["rows"]]
