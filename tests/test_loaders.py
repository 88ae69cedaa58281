"""Both data paths feed the model the same samples in the same order for a seed.

Real prepared data (the session's generated microbeads), real torch DataLoaders with worker
processes, and a real Trainer run per path.
"""

from __future__ import annotations

import pytest
import torch

from hpstudy.config import TrainConfig
from hpstudy.loaders import DeviceLoader, TorchLoader, make_loader
from hpstudy.prepare import load_prepared
from hpstudy.seeding import epoch_order

CPU = torch.device("cpu")
BATCH = 16  # 56 training samples -> 4 batches, the last one partial (8)


@pytest.fixture(scope="module")
def data(prepared):
    d = load_prepared(prepared)
    return d["images"], d["targets"], torch.from_numpy(d["split"]["train"])


def batches(loader, epoch, start=0):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch, start)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == torch.uint8
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)


def test_device_batches_follow_epoch_order(data):
    images, targets, train = data
    loader = DeviceLoader(images, targets, train, BATCH, CPU, shuffle=True, seed=5)
    got = batches(loader, epoch=2)
    order = train[epoch_order(len(train), 5, 2)]
    assert [len(y) for _, y in got] == [16, 16, 16, 8]
    assert torch.equal(torch.cat([x for x, _ in got]), images[order])
    assert torch.equal(torch.cat([y for _, y in got]), targets[order])


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_matches_device_path(data, workers):
    images, targets, train = data
    device = DeviceLoader(images, targets, train, BATCH, CPU, shuffle=True, seed=3)
    classic = TorchLoader(
        images, targets, train, BATCH, CPU, shuffle=True, seed=3, num_workers=workers
    )
    for epoch in range(3):  # persistent workers must follow each new epoch's order
        assert_same(batches(device, epoch), batches(classic, epoch))


@pytest.mark.parametrize("workers", [0, 2])
def test_mid_epoch_start_gives_the_rest_of_the_epoch(data, workers):
    images, targets, train = data
    device = DeviceLoader(images, targets, train, BATCH, CPU, shuffle=True, seed=9)
    classic = TorchLoader(
        images, targets, train, BATCH, CPU, shuffle=True, seed=9, num_workers=workers
    )
    full = batches(device, epoch=4)
    for start in (1, 3):
        assert_same(batches(device, 4, start), full[start:])
        assert_same(batches(classic, 4, start), full[start:])
    # a resumed epoch does not leave the next full epoch short
    assert_same(batches(classic, 5), batches(device, 5))


def test_order_depends_on_seed_and_epoch_and_covers_every_sample(data):
    images, targets, train = data
    a = DeviceLoader(images, targets, train, BATCH, CPU, shuffle=True, seed=1)
    b = DeviceLoader(images, targets, train, BATCH, CPU, shuffle=True, seed=2)
    ya0 = torch.cat([y for _, y in a.epoch(0)])
    assert not torch.equal(ya0, torch.cat([y for _, y in a.epoch(1)]))
    assert not torch.equal(ya0, torch.cat([y for _, y in b.epoch(0)]))
    assert torch.equal(ya0.sort().values, targets[train].sort().values)


@pytest.mark.parametrize("workers", [0, 2])
def test_unshuffled_paths_keep_split_order(data, workers):
    images, targets, train = data
    for loader in (
        DeviceLoader(images, targets, train, 24, CPU, shuffle=False),
        TorchLoader(images, targets, train, 24, CPU, shuffle=False, num_workers=workers),
    ):
        got = batches(loader, epoch=7)
        assert torch.equal(torch.cat([x for x, _ in got]), images[train])
        assert [len(y) for _, y in batches(loader, 7, start=2)] == [8]


def test_make_loader_picks_the_configured_path(data):
    images, targets, train = data
    dev = make_loader(TrainConfig(), images, targets, train, CPU, shuffle=True)
    classic = make_loader(
        TrainConfig(data_path="dataloader", batch_size=8), images, targets, train, CPU, shuffle=True
    )
    assert isinstance(dev, DeviceLoader) and len(dev) == 2  # 56 / 32
    assert isinstance(classic, TorchLoader) and len(classic) == 7


def test_training_is_identical_on_both_paths(prepared, tmp_path):
    """The model sees the same batches: one epoch of real training gives the same losses
    and weights on the device path and on a DataLoader with worker processes."""
    from hpstudy.train import Trainer

    results, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a busy host
    try:
        for path, workers in (("device", 0), ("dataloader", 2)):
            cfg = TrainConfig(
                epochs=2,
                batch_size=16,
                data_path=path,
                num_workers=workers,
                augment=("dihedral",),
                seed=4,
                diagnostics_every=0,
            )
            out = tmp_path / path
            trainer = Trainer(cfg, prepared, out, out / "ck.pt", log=lambda msg: None)
            metrics = trainer.fit()
            results[path] = (
                [r["train_loss"] for r in trainer.state.history],
                metrics["best_val_loss"],
                torch.cat([p.detach().flatten() for p in trainer.model.parameters()]),
            )
    finally:
        torch.set_num_threads(threads)
    (loss_a, val_a, w_a), (loss_b, val_b, w_b) = results["device"], results["dataloader"]
    assert loss_a == loss_b and val_a == val_b
    assert torch.equal(w_a, w_b)
