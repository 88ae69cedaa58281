"""Batched augmentation on the training device (airbench style: tensor ops, no per-image
Python). Input and output are float NCHW images, normalised with the training set's mean and
SD when the `Augmenter` is given them ([0, 1] otherwise). Randomness comes from an explicit
generator so that runs are reproducible and resumable; CutMix/MixUp are torchvision v2
transforms, which draw from the global torch RNG (the trainer seeds it per epoch and saves
its state in checkpoints, so they are reproducible and resumable too).
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


def _uniform(n: int, gen: torch.Generator, device, low: float, high: float) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=gen.device) * (high - low) + low).to(device)


def rotate(x: torch.Tensor, gen: torch.Generator, degrees: float) -> torch.Tensor:
    """Rotate each image by its own angle in [-degrees, degrees] about the centre (bilinear,
    one affine_grid/grid_sample for the batch). Corners outside the source read 0, which
    after normalisation is the training set's mean colour."""
    if degrees == 0:
        return x
    return rotate_by(x, _uniform(len(x), gen, x.device, -degrees, degrees))


def rotate_by(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i by degrees[i] (counter-clockwise as displayed, like torch.rot90)."""
    n, _, h, w = x.shape
    angle = degrees.to(x.device, torch.float64) * (torch.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    # grid coordinates are normalised per axis; the h/w factors keep non-square images rigid
    theta = torch.stack(
        [torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shift_hue(x01: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each RGB image's hue by `shift[i]` turns (HSV, as torchvision's adjust_hue),
    batched: one shift per image instead of one adjust_hue call per image."""
    r, g, b = x01.unbind(1)
    maxc, _ = x01.max(1)
    minc, _ = x01.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = (
        torch.where(
            maxc == r,
            ((g - b) / safe) % 6,
            torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4),
        )
        / 6
    )
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    hue = (hue + shift.view(-1, 1, 1).to(hue.dtype)) % 1.0
    channels = []
    for n in (5.0, 3.0, 1.0):  # r, g, b from (h, s, v)
        k = (n + hue * 6) % 6
        weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
        channels.append(maxc - maxc * sat * weight)
    return torch.stack(channels, 1)


def color_jitter(
    x01: torch.Tensor, gen: torch.Generator, strength: float, hue: float = 0.0
) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors drawn from
    [max(0, 1 - strength), 1 + strength] and a hue shift from [-hue, hue] turns
    (torchvision ColorJitter's ranges; applied in this fixed order). Works on [0, 1]
    images; saturation and hue need RGB."""
    if strength == 0 and hue == 0:
        return x01
    n, c = x01.shape[:2]
    low, high = max(0.0, 1.0 - strength), 1.0 + strength

    def factor() -> torch.Tensor:
        return _uniform(n, gen, x01.device, low, high).view(n, 1, 1, 1).to(x01.dtype)

    def gray(img: torch.Tensor) -> torch.Tensor:
        if c == 1:
            return img
        weights = torch.tensor([0.299, 0.587, 0.114], device=img.device, dtype=img.dtype)
        return (img * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)

    x01 = (x01 * factor()).clamp_(0, 1)  # brightness
    mean = gray(x01).mean(dim=(1, 2, 3), keepdim=True)
    x01 = (mean + factor() * (x01 - mean)).clamp_(0, 1)  # contrast
    if c == 3:
        g = gray(x01)
        x01 = (g + factor() * (x01 - g)).clamp_(0, 1)  # saturation
        if hue > 0:
            x01 = shift_hue(x01, _uniform(n, gen, x01.device, -hue, hue))
    return x01


def make_mix(mode: str, num_classes: int, alpha: float):
    """torchvision v2 CutMix, MixUp or a random choice of the two (per batch); returns a
    callable (images, int labels) -> (images, soft labels of shape N x num_classes)."""
    from torchvision.transforms import v2

    if num_classes < 2:
        raise ValueError(f"mix={mode!r} needs a classification dataset with >= 2 classes")
    if alpha <= 0:
        raise ValueError(f"mix_alpha={alpha} must be > 0 for mix={mode!r}")
    cutmix = v2.CutMix(num_classes=num_classes, alpha=alpha)
    mixup = v2.MixUp(num_classes=num_classes, alpha=alpha)
    return {"cutmix": cutmix, "mixup": mixup, "cutmix_mixup": v2.RandomChoice([cutmix, mixup])}[
        mode
    ]


class Augmenter:
    """Applies the configured augmentations in the order `cfg.augment` lists them, then
    CutMix/MixUp. `mean`/`std` (C values) undo and redo the input normalisation around
    colour jitter, which is defined on [0, 1] pixels."""

    def __init__(self, cfg, task: str, num_classes: int = 0, mean=None, std=None):
        self.cfg, self.task, self.num_classes = cfg, task, num_classes
        self.active = bool(cfg.augment) or cfg.mix != "none"
        self.mean, self.std = mean, std
        self.mix = None
        if cfg.mix != "none":
            if task != "classification":
                raise ValueError(
                    f"mix={cfg.mix!r} mixes class labels; the {task} task has none: set mix: none"
                )
            self.mix = make_mix(cfg.mix, num_classes, cfg.mix_alpha)

    def _jitter(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        strength, hue = self.cfg.color_jitter, self.cfg.color_jitter_hue
        if self.mean is None:
            return color_jitter(x, gen, strength, hue)
        mean = torch.as_tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (color_jitter(x * std + mean, gen, strength, hue) - mean) / std

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
            elif name == "rotate":
                x = rotate(x, gen, cfg.rotation_degrees)
            elif name == "jitter":
                x = self._jitter(x, gen)
            else:
                raise ValueError(f"augmentation {name!r} is unknown")
        if self.mix is not None:
            x, y = self.mix(x, y.long())
        return x, y
