"""Everything a run's seed decides, in one place.

Two runs with the same seed see the same initial weights, training subset, sample order,
augmentation draws and dropout masks; two seeds differ in all of them. Each stream is a
function of (seed, epoch) alone, never of what ran before, so a run resumed mid-way, a
run on the DataLoader path and (issue 23) a seed trained beside others in one fused model
all draw exactly what a fresh run of that seed draws. The constants are arbitrary primes;
changing one changes every result.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global RNG: the initial weights of a run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_subset(train: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """The `train_subset` of a seed: `n` training samples drawn without replacement (sorted),
    or the whole training split for n=None."""
    if n is None:
        return train
    if n > len(train):
        raise ValueError(f"train_subset={n} exceeds the {len(train)} training samples")
    rng = np.random.default_rng([seed, 7])
    return np.sort(rng.choice(train, size=n, replace=False))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the `n` training samples in `epoch` (drawn on the CPU, so both data
    paths and every device agree)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def epoch_seed(seed: int, epoch: int) -> int:
    """torch's global RNG is reseeded with this at the start of every epoch (dropout and
    anything else drawing from it), so an epoch's draws do not depend on the epochs before."""
    return seed * 104729 + epoch


def augment_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator of an epoch's augmentation and mixing draws, on the training device."""
    gen = torch.Generator(device=device)
    return gen.manual_seed(seed * 7919 + epoch)
