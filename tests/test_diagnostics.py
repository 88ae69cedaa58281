"""Training diagnostics: the gradient noise scale estimator on gradients with known noise,
gradient-norm stability, per-layer update ratios, mid-epoch state, job provenance, and one
real training run's recorded diagnostics."""

import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hpstudy.diagnostics import Diagnostics, job_environment


def feed(diag, grads, model, start_step=1):
    """Hand `diag` the given per-step gradients as if backward had produced them."""
    weight = model.weight
    for i, g in enumerate(grads, start=start_step):
        weight.grad = g.clone()
        diag.after_backward(i, 1)
        diag.after_step(i, 1)


def noisy_grads(true_g, sigma, batch, steps, seed):
    """Per-step gradients G + mean of `batch` per-sample noises N(0, sigma^2 I)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(steps, *true_g.shape, generator=gen) * sigma / math.sqrt(batch)
    return [true_g + n for n in noise]


@pytest.mark.parametrize("batch, sigma", [(8, 1.0), (32, 2.0)])
def test_noise_scale_recovers_known_value(batch, sigma):
    # tr(Sigma) = D sigma^2 and |G|^2 known, so B_noise = D sigma^2 / |G|^2 exactly
    model = torch.nn.Linear(20, 10, bias=False)
    true_g = torch.linspace(-1, 1, 200).view(10, 20) * 0.5
    expected = 200 * sigma**2 / float(true_g.pow(2).sum())
    diag = Diagnostics(model, every=0, batch_size=batch)
    feed(diag, noisy_grads(true_g, sigma, batch, 2000, seed=batch), model)
    out = diag.epoch_summary()
    assert out["grad_noise_scale"] == pytest.approx(expected, rel=0.1)
    assert out["grad_variance"] == pytest.approx(200 * sigma**2 / batch, rel=0.1)


def test_noise_scale_larger_for_noisier_gradients():
    model = torch.nn.Linear(20, 10, bias=False)
    true_g = torch.ones(10, 20) * 0.1
    scales = []
    for sigma in (0.5, 2.0):
        diag = Diagnostics(model, every=0, batch_size=16)
        feed(diag, noisy_grads(true_g, sigma, 16, 400, seed=1), model)
        scales.append(diag.epoch_summary()["grad_noise_scale"])
    assert scales[1] > 8 * scales[0]  # 16x the variance, B_noise scales with sigma^2


def test_grad_norm_mean_and_cv_match_numpy():
    model = torch.nn.Linear(4, 3, bias=False)
    grads = [torch.full((3, 4), v) for v in (0.5, 1.0, 2.0, 4.0, 0.25)]
    diag = Diagnostics(model, every=0, batch_size=4)
    feed(diag, grads, model)
    norms = np.array([float(g.norm()) for g in grads])
    out = diag.epoch_summary()
    assert out["grad_norm_mean"] == pytest.approx(norms.mean())
    assert out["grad_norm_cv"] == pytest.approx(norms.std(ddof=1) / norms.mean())


def test_single_step_gives_no_noise_scale_and_no_crash():
    model = torch.nn.Linear(4, 3, bias=False)
    diag = Diagnostics(model, every=0, batch_size=4)
    feed(diag, [torch.ones(3, 4)], model)
    out = diag.epoch_summary()
    assert math.isnan(out["grad_noise_scale"]) and math.isnan(out["grad_norm_cv"])
    assert out["grad_norm_mean"] == pytest.approx(math.sqrt(12))


def test_layer_rows_record_grad_flow_and_update_ratio():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    diag = Diagnostics(model, every=2, batch_size=8)
    x, y = torch.randn(8, 6), torch.randn(8, 1)
    for step in range(1, 5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        grad_abs = float(model[0].weight.grad.abs().mean())
        before = model[0].weight.detach().clone()
        diag.after_backward(step, 1)
        opt.step()
        diag.after_step(step, 1)
        if step % 2 == 0:
            ratio = float((model[0].weight.detach() - before).norm() / before.norm())
            row = diag.table().query("step == @step and layer == '0.weight'").iloc[0]
            assert row["grad_abs_mean"] == pytest.approx(grad_abs)
            assert row["update_ratio"] == pytest.approx(ratio, rel=1e-5)
    table = diag.table()
    assert sorted(table["step"].unique()) == [2, 4]  # every 2 steps
    assert set(table["layer"]) == {"0.weight", "2.weight"}  # weights, not biases


def test_epoch_state_round_trip_gives_the_same_summary():
    model = torch.nn.Linear(5, 4, bias=False)
    grads = noisy_grads(torch.ones(4, 5), 1.0, 8, 9, seed=5)
    whole = Diagnostics(model, every=0, batch_size=8)
    feed(whole, grads, model)
    first = Diagnostics(model, every=0, batch_size=8)
    feed(first, grads[:5], model)  # an odd count: a pair is open at the checkpoint
    state = torch.load(_saved(first.epoch_state()), weights_only=True)
    second = Diagnostics(model, every=0, batch_size=8)
    second.load_epoch_state(state)
    feed(second, grads[5:], model, start_step=6)
    assert second.epoch_summary() == pytest.approx(whole.epoch_summary())


def _saved(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_job_environment_reads_scheduler_container_and_queue_time():
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_PARTITION": "gpu",
        "APPTAINER_CONTAINER": "/images/hpstudy.sif",
        "HPSTUDY_SUBMIT_TIME": "1000",
        "SLURM_JOB_START_TIME": "1090",
    }
    out = job_environment(env, now=1100.0)
    assert out["job_id"] == "4242" and out["slurm_partition"] == "gpu"
    assert out["container_image"] == "/images/hpstudy.sif"
    assert out["queue_time_s"] == 90.0 and out["run_started_at"] == 1100.0
    pbs = job_environment(
        {"PBS_JOBID": "77.server", "PBS_QUEUE": "gpuq", "SINGULARITY_CONTAINER": "/img.sif"},
        now=5.0,
    )
    assert pbs["job_id"] == "77.server" and pbs["pbs_queue"] == "gpuq"
    assert pbs["container_image"] == "/img.sif" and "queue_time_s" not in pbs
    # a job's second seed starts long after the job did: its queue time is the job's
    from hpstudy.diagnostics import PROCESS_START

    submitted = {"PBS_JOBID": "78.server", "HPSTUDY_SUBMIT_TIME": str(PROCESS_START - 50)}
    later = job_environment(submitted, now=PROCESS_START + 1000)
    assert later["queue_time_s"] == pytest.approx(50, abs=1e-3)
    bare = job_environment({}, now=1.0)
    assert bare["job_id"] is None and "container_image" not in bare


def test_training_run_records_every_diagnostic(prepared, tmp_path):
    from hpstudy.config import TrainConfig
    from hpstudy.train import run

    cfg = TrainConfig.from_dict(
        {"epochs": 2, "batch_size": 8, "grad_accum_steps": 2, "diagnostics_every": 2}
    )
    metrics = run(cfg, prepared, tmp_path / "run", tmp_path / "ck.pt", log=lambda m: None)
    out = tmp_path / "run"
    with gzip.open(out / "layers.csv.gz", "rt") as fh:  # really gzip-compressed
        layers = pd.read_csv(fh)
    assert {"step", "epoch", "layer", "grad_abs_mean", "update_ratio"} <= set(layers.columns)
    assert (layers["grad_abs_mean"] > 0).all() and (layers["update_ratio"] > 0).all()
    history = pd.read_csv(out / "history.csv")
    # 56 train samples / (8 x 2) -> 4 optimizer steps per epoch -> 2 pairs per epoch
    assert history["grad_variance"].notna().all() and (history["grad_variance"] > 0).all()
    assert history["grad_norm_cv"].notna().all()
    saved = json.loads((out / "metrics.json").read_text())
    for key in (
        "flops_train_per_sample",
        "parameters",
        "model_size_mb",
        "peak_memory_mb",
        "throughput_samples_per_s",
        "time_per_epoch_s",
        "data_wait_fraction",
        "memory_efficiency",
        "hostname",
        "job_id",
        "run_started_at",
    ):
        assert key in saved, key
    assert saved["memory_efficiency"] == pytest.approx(
        saved["test_r2"] / (saved["peak_memory_mb"] / 1024)
    )
    assert metrics["peak_memory_kind"] == "cpu_peak_rss"
