"""Every training knob has an observable effect that a test checks: the optimizer class and
its parameter groups, the learning-rate trajectory of each schedule, the gradient norm after
clipping, the gradient of an accumulated batch, weight decay and momentum in one step, the
cleanup interval, and a diverged run stopped within its epoch. Swapping two branches of
make_optimizer/make_scheduler, or ignoring a knob, fails here. Tiny models, one thread."""

from __future__ import annotations

import math

import pytest
import torch

from hpstudy.config import TrainConfig
from hpstudy.optim import make_optimizer, make_scheduler
from hpstudy.train import Trainer, run


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cfg(**values) -> TrainConfig:
    return TrainConfig.from_dict(
        {"epochs": 1, "batch_size": 8, "diagnostics_every": 0, "patience": None, **values}
    )


# -- optimizers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, cls, group",
    [
        ("adam", torch.optim.Adam, {"lr": 0.002, "weight_decay": 0.01}),
        ("adamw", torch.optim.AdamW, {"lr": 0.002, "weight_decay": 0.01}),
        (
            "sgd",
            torch.optim.SGD,
            {"lr": 0.002, "weight_decay": 0.01, "momentum": 0.8, "nesterov": True},
        ),
        ("rmsprop", torch.optim.RMSprop, {"lr": 0.002, "weight_decay": 0.01, "momentum": 0.8}),
    ],
)
def test_optimizer_class_and_parameter_groups(name, cls, group):
    c = cfg(optimizer=name, lr=0.002, weight_decay=0.01, momentum=0.8, nesterov=name == "sgd")
    opt = make_optimizer(c, torch.nn.Linear(3, 2))
    assert type(opt) is cls
    for key, value in group.items():
        assert opt.param_groups[0][key] == value, key


def _one_step(c: TrainConfig, grad: float, steps: int = 1) -> float:
    """The value of a scalar parameter (start 1.0) after `steps` steps with a fixed grad."""
    p = torch.nn.Parameter(torch.ones(1))
    model = torch.nn.Module()
    model.p = p
    opt = make_optimizer(c, model)
    for _ in range(steps):
        p.grad = torch.full_like(p, grad)
        opt.step()
    return float(p.detach())


def test_weight_decay_acts_in_one_step():
    lr, wd = 0.1, 0.5
    # SGD adds wd * p to the gradient; AdamW shrinks p by lr * wd before its update
    assert _one_step(
        cfg(optimizer="sgd", lr=lr, weight_decay=wd, momentum=0.0), 0.0
    ) == pytest.approx(1 - lr * wd)
    assert _one_step(cfg(optimizer="adamw", lr=lr, weight_decay=wd), 0.0) == pytest.approx(
        1 - lr * wd
    )
    assert _one_step(cfg(optimizer="sgd", lr=lr, weight_decay=0.0, momentum=0.0), 0.0) == 1.0


def test_sgd_momentum_and_nesterov_change_the_second_step():
    lr, m, g = 0.1, 0.9, 1.0
    plain = _one_step(cfg(optimizer="sgd", lr=lr, momentum=0.0, weight_decay=0.0), g, 2)
    heavy = _one_step(cfg(optimizer="sgd", lr=lr, momentum=m, weight_decay=0.0), g, 2)
    nesterov = _one_step(
        cfg(optimizer="sgd", lr=lr, momentum=m, nesterov=True, weight_decay=0.0), g, 2
    )
    assert plain == pytest.approx(1 - 2 * lr * g)
    assert heavy == pytest.approx(1 - lr * g - lr * (m * g + g))  # buffer m*g + g
    assert nesterov == pytest.approx(1 - lr * (g + m * g) - lr * (g + m * (m * g + g)))


# -- schedules ----------------------------------------------------------------------------------
def _lrs(c: TrainConfig, epochs: int, val_losses=None) -> list[float]:
    opt = make_optimizer(c, torch.nn.Linear(2, 1))
    sched = make_scheduler(c, opt)
    out = []
    for e in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_losses[e])
        elif sched is not None:
            sched.step()
    return out


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_each_schedule_has_its_lr_trajectory():
    lr = 0.1
    assert _lrs(cfg(lr=lr), 4) == [lr] * 4
    cos = _lrs(cfg(lr=lr, scheduler="cosine", epochs=4, eta_min=0.01), 4)
    assert cos == pytest.approx(
        [0.01 + (lr - 0.01) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    )
    assert _lrs(cfg(lr=lr, scheduler="cosine", epochs=8, t_max=2), 3) == pytest.approx(
        [lr, lr / 2, 0.0], abs=1e-12
    )
    assert _lrs(cfg(lr=lr, scheduler="step", step_size=2, gamma=0.5), 5) == pytest.approx(
        [lr, lr, lr / 2, lr / 2, lr / 4]
    )
    assert _lrs(cfg(lr=lr, scheduler="exponential", gamma=0.5), 3) == pytest.approx(
        [lr, lr / 2, lr / 4]
    )
    plateau = _lrs(
        cfg(lr=lr, scheduler="plateau", plateau_patience=1, plateau_factor=0.2),
        5,
        [1.0, 1.0, 1.0, 1.0, 1.0],
    )
    assert plateau == pytest.approx([lr, lr, lr, lr * 0.2, lr * 0.2])


def test_trainer_steps_the_schedule_once_per_epoch(prepared, tmp_path):
    metrics = run(
        cfg(model="mlp", epochs=3, scheduler="step", step_size=1, gamma=0.5, lr=0.01),
        prepared,
        tmp_path / "run",
        tmp_path / "ck.pt",
        log=lambda m: None,
    )
    import pandas as pd

    assert metrics["status"] == "ok"
    assert list(pd.read_csv(tmp_path / "run/history.csv")["lr"]) == pytest.approx(
        [0.01, 0.005, 0.0025]
    )


# -- the loop: clipping, accumulation, cleanup, divergence ---------------------------------------
def _grads_at_steps(c: TrainConfig, prepared, tmp_path) -> tuple[list[float], list[torch.Tensor]]:
    """Total gradient norm and the flattened gradient the optimizer sees at every step."""
    trainer = Trainer(c, prepared, tmp_path, tmp_path / "ck.pt", lambda m: None)
    norms, grads = [], []
    step = trainer.optimizer.step

    def observed(*args, **kwargs):
        g = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        norms.append(float(g.norm()))
        grads.append(g.clone())
        return step(*args, **kwargs)

    trainer.optimizer.step = observed
    trainer.fit()
    return norms, grads


def test_grad_clip_bounds_the_norm_the_optimizer_sees(prepared, tmp_path):
    free, _ = _grads_at_steps(cfg(model="mlp"), prepared, tmp_path / "free")
    clip = min(free) / 4
    clipped, _ = _grads_at_steps(cfg(model="mlp", grad_clip=clip), prepared, tmp_path / "clip")
    assert len(clipped) == len(free) == 7  # 56 samples in batches of 8
    assert max(clipped) <= clip * (1 + 1e-5)
    assert min(free) > clip


def test_accumulated_micro_batches_give_the_true_batch_gradient(prepared, tmp_path):
    # an MLP has no batch statistics: 2 micro-batches of 4 == one batch of 8
    _, true = _grads_at_steps(cfg(model="mlp", batch_size=8), prepared, tmp_path / "a")
    _, acc = _grads_at_steps(
        cfg(model="mlp", batch_size=4, grad_accum_steps=2), prepared, tmp_path / "b"
    )
    assert len(acc) == len(true) == 7
    torch.testing.assert_close(acc[0], true[0], rtol=1e-4, atol=1e-6)


def test_cleanup_every_collects_garbage_every_n_batches(prepared, tmp_path, monkeypatch):
    import hpstudy.train

    calls = []
    monkeypatch.setattr(hpstudy.train.gc, "collect", lambda *a: calls.append(1) or 0)
    run(
        cfg(model="mlp", cleanup_every=2),
        prepared,
        tmp_path / "r",
        tmp_path / "ck.pt",
        log=lambda m: None,
    )
    assert len(calls) == 7 // 2  # 7 batches per epoch
    calls.clear()
    run(
        cfg(model="mlp", cleanup_every=0),
        prepared,
        tmp_path / "s",
        tmp_path / "ck2.pt",
        log=lambda m: None,
    )
    assert calls == []


def test_a_diverged_run_stops_within_its_epoch(prepared, tmp_path):
    """The loss is looked at every 25 steps (no host sync per step), yet a run whose loss
    blows up stops long before its 56-step epoch ends."""
    lines: list[str] = []
    metrics = run(
        cfg(model="mlp", optimizer="sgd", lr=10.0, momentum=0.9, batch_size=1, epochs=2),
        prepared,
        tmp_path / "r",
        tmp_path / "ck.pt",
        log=lines.append,
    )
    assert metrics["status"] == "diverged" and metrics["diverged_epoch"] == 1
    assert metrics["optimizer_steps"] in (25, 50)
    assert any("not finite at epoch 1" in line for line in lines)


def test_train_subset_draws_that_many_samples(prepared, tmp_path):
    metrics = run(
        cfg(model="mlp", train_subset=20),
        prepared,
        tmp_path / "r",
        tmp_path / "ck.pt",
        log=lambda m: None,
    )
    assert metrics["n_train"] == 20 and metrics["optimizer_steps"] == math.ceil(20 / 8)


def test_the_settings_the_report_calls_ignored_are_those_the_trainer_skips(prepared, tmp_path):
    """The report lists config.ignored_settings for each run's device; the Trainer and the
    loaders follow config.device_effects: one rule, so the list is what the Trainer did."""
    from dataclasses import replace

    from hpstudy.config import device_effects, ignored_settings

    c = TrainConfig(
        epochs=1, batch_size=16, mixed_precision=True, data_path="dataloader", pin_memory=True
    )
    trainer = Trainer(c, prepared, tmp_path, tmp_path / "ck.pt", lambda m: None)
    assert trainer.device.type == "cpu"
    assert set(ignored_settings(c, "cpu")) == {"mixed_precision", "channels_last", "pin_memory"}
    assert not trainer.amp and trainer.memory_format == torch.contiguous_format
    assert not trainer.train_loader.loader.pin_memory
    assert device_effects(c, "cuda") == dict.fromkeys(device_effects(c, "cpu"), True)
    assert ignored_settings(c, "cuda") == {}
    # on the device path nothing is pinned, GPU or not
    assert set(ignored_settings(replace(c, data_path="device"), "cuda")) == {"pin_memory"}
    # a summary.csv row (strings and floats) reads the same as the config
    row = {k: str(v) for k, v in c.to_dict().items()}
    assert ignored_settings(row, "cpu") == ignored_settings(c, "cpu")
