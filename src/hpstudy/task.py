"""What the data means to the model: its inputs, targets, loss and metrics, per task.

A prepared dataset is a regression task (the model predicts one standardised number per
image; metrics in the dataset's own units) or a classification task (logits; soft labels
after CutMix/MixUp). `Task` holds the per-run constants for both and turns uint8 batches
into model inputs, raw targets into training targets, and a split's outputs into its
metrics. It knows nothing of the model or the loop, so the plain Trainer and a fused
trainer that scores k seeds at once (hpstudy.fused) use the same arithmetic. Inputs,
targets and losses are in torch's default dtype: float32, unless a test sets float64
(tests/test_fused.py compares fused and separate runs there, where reassociation leaves
differences near 1e-13 instead of 1e-3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hpstudy.config import TrainConfig
from hpstudy.metrics import TASK_METRICS, classification_metrics, regression_metrics


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


class Task:
    """The task of a prepared dataset (its manifest) for one run's config on one device."""

    def __init__(
        self,
        cfg: TrainConfig,
        manifest: dict[str, Any],
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.kind = manifest["task"]  # "regression" or "classification"
        self.num_classes = int(manifest["num_classes"])
        self.outputs = 1 if self.kind == "regression" else self.num_classes
        self.primary = TASK_METRICS[self.kind][0]  # r2 or accuracy: what the log shows
        if self.kind == "regression":  # the model predicts standardised targets
            self.t_mean, self.t_std = manifest["target_mean"], manifest["target_std"]
        self.norm_mean, self.norm_std = input_normalisation(cfg, manifest)
        mean = torch.tensor(self.norm_mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.norm_std, device=device).view(1, -1, 1, 1)
        # (x/255 - mean)/std as one multiply-add: the per-batch input cost of the device path
        self.in_scale, self.in_shift = 1.0 / (255.0 * std), -mean / std
        self.memory_format = memory_format

    def inputs(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.to(torch.get_default_dtype()).mul_(self.in_scale).add_(self.in_shift)
        return x.contiguous(memory_format=self.memory_format)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "regression":
            return ((y.to(torch.get_default_dtype()) - self.t_mean) / self.t_std).view(-1, 1)
        return y.long()

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.to(torch.get_default_dtype())  # autocast's bf16/fp16 outputs
        if self.kind == "regression":
            return F.mse_loss(out, y)
        return F.cross_entropy(out, y)  # y may be soft labels after CutMix/MixUp

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """A split's metrics from the model's float outputs and the raw targets: `loss` (on
        the training scale) and the task's metrics (regression: in the target's units)."""
        if self.kind == "regression":
            norm_loss = float(F.mse_loss(out, self.targets(y)))
            pred = out.flatten() * self.t_std + self.t_mean
            return {"loss": norm_loss, **regression_metrics(pred.cpu(), y.float().cpu())}
        return classification_metrics(out.cpu(), y.cpu())
