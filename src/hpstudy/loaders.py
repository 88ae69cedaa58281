"""The two data paths. Both yield the same uint8 batches in the same order for a seed.

- `DeviceLoader` (default): the split lives on the training device as one uint8 tensor;
  an epoch is a permutation indexed on the device (airbench style): no per-batch CPU work.
- `TorchLoader`: the classic torch DataLoader (workers, pin_memory, persistent workers)
  over the memory-mapped prepared file, kept because the data_loading study compares them.

Shuffling order comes from `seeding.epoch_order(n, seed, epoch)` on the CPU, so both paths,
and a run resumed mid-way, see exactly the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from hpstudy.config import device_effects, num_batches
from hpstudy.seeding import epoch_order


class DeviceLoader:
    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.drop_last = drop_last
        self.images = images.index_select(0, indices).to(device, non_blocking=True)
        self.targets = targets.index_select(0, indices).to(device, non_blocking=True)
        self.batch_size, self.shuffle, self.seed, self.device = batch_size, shuffle, seed, device
        self.n = len(indices)

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size, self.drop_last)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        order = (
            epoch_order(self.n, self.seed, epoch) if self.shuffle else torch.arange(self.n)
        ).to(self.device)
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            # index_select copies whole images; `images[idx]` took 10x longer on CPU
            yield self.images.index_select(0, idx), self.targets.index_select(0, idx)


class _Subset(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor):
        self.images, self.targets, self.indices = images, targets, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        return self.images[j], self.targets[j]


class _OrderSampler(torch.utils.data.Sampler):
    """Yields `epoch_order(seed, epoch)` from `start`, the same order the device path uses."""

    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n, self.seed, self.shuffle, self.epoch, self.start = n, seed, shuffle, 0, 0

    def __len__(self) -> int:
        return self.n - self.start

    def __iter__(self):
        # runs in the main process, so `epoch` and `start` set by TorchLoader.epoch() reach
        # it even with persistent workers
        if self.shuffle:
            return iter(epoch_order(self.n, self.seed, self.epoch)[self.start :].tolist())
        return iter(range(self.start, self.n))


class TorchLoader:
    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,  # the caller decides (config.device_effects)
        drop_last: bool = False,
    ):
        self.n, self.batch_size, self.device = len(indices), batch_size, device
        self.drop_last = drop_last
        self.sampler = _OrderSampler(self.n, seed, shuffle)
        self.loader = torch.utils.data.DataLoader(
            _Subset(images, targets, indices),
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            drop_last=drop_last,
        )

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size, self.drop_last)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        self.sampler.epoch, self.sampler.start = epoch, start_batch * self.batch_size
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_loader(
    cfg, images, targets, indices, device, shuffle: bool, batch_size: int | None = None
):
    """The training loader (shuffled, `cfg.drop_last`) or an evaluation one (every sample)."""
    batch_size = batch_size or cfg.batch_size
    drop_last = cfg.drop_last and shuffle
    if cfg.data_path == "dataloader":
        return TorchLoader(
            images,
            targets,
            indices,
            batch_size,
            device,
            shuffle,
            cfg.seed,
            cfg.num_workers,
            device_effects(cfg, device.type)["pin_memory"],
            drop_last,
        )
    return DeviceLoader(images, targets, indices, batch_size, device, shuffle, cfg.seed, drop_last)
