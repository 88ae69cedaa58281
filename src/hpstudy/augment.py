"""Batched augmentation on the training device (airbench style: tensor ops, no per-image
Python). Input and output are float images in [0, 1], NCHW. Randomness comes from an
explicit generator so that runs are reproducible and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _coin(n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device).to(device) < 0.5


def hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = _coin(len(x), gen, x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def vflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = _coin(len(x), gen, x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(2), x)


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One of the 8 symmetries of the square per image (count targets are invariant)."""
    if x.shape[2] != x.shape[3]:
        raise ValueError("dihedral augmentation needs square images")
    k = torch.randint(0, 4, (len(x),), generator=gen, device=gen.device).to(x.device)
    out = x
    for r in range(1, 4):
        out = torch.where((k == r).view(-1, 1, 1, 1), x.rot90(r, dims=(2, 3)), out)
    return hflip(out, gen)


def random_crop(x: torch.Tensor, gen: torch.Generator, padding: int) -> torch.Tensor:
    """Pad by `padding` (reflect) and take a random crop of the original size per image."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


class Augmenter:
    """Applies the configured augmentations in a fixed order."""

    def __init__(self, cfg, task: str, num_classes: int = 0):
        self.cfg, self.task, self.num_classes = cfg, task, num_classes
        self.active = bool(cfg.augment) or cfg.mix != "none"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        cfg = self.cfg
        for name in cfg.augment:
            if name == "hflip":
                x = hflip(x, gen)
            elif name == "vflip":
                x = vflip(x, gen)
            elif name == "dihedral":
                x = dihedral(x, gen)
            elif name == "crop":
                x = random_crop(x, gen, cfg.crop_padding)
            else:
                raise NotImplementedError(f"augmentation {name!r} is not implemented yet")
        if cfg.mix != "none":
            raise NotImplementedError("CutMix/MixUp is not implemented yet")
        return x, y
