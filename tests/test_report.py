"""The report: built from a realistic synthetic study (real study file, real extract and
aggregate code, run folders with history.csv and layers.csv.gz), plus one real small
Snakemake run (slow). Verdicts are recomputed here from summary.csv with scipy/statsmodels
directly, independently of hpstudy.stats."""

import base64
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import stats as st

from hpstudy.aggregate import aggregate_study
from hpstudy.atomic import write_csv, write_json
from hpstudy.config import TrainConfig
from hpstudy.extract import write_extract
from hpstudy.formatting import fmt_signed
from hpstudy.report import render
from hpstudy.study import load_study

STUDY = """
name: synth
description: Synthetic study with known effects, for report tests.
seeds: 3
sesoi: 0.01
deviations:
  - {setting: base.patience, report: "15", ours: "2", why: a short synthetic run}
dataset: {name: microbeads, image_size: 32}
base: {epochs: 4, batch_size: 32, lr: 3.0e-4, patience: 2}
groups:
  batch_size:
    question: Do smaller batches give better R2?
    baseline: bs32
    grid: {batch_size: [16, 32, 64, 128]}
    expect: {trend: decreasing, scale: log2}
  lr_scaling:
    question: Must the learning rate scale with the batch size?
    baseline: bs32_lr3e-4
    list:
      - {batch_size: 32, lr: 3.0e-4}
      - {batch_size: 64, lr: 6.0e-4}
      - {batch_size: 128, lr: 1.2e-3}
      - {batch_size: 32, lr: 1.0e-3}
  grad_accumulation:
    question: Does a true batch beat gradient accumulation?
    baseline: bs32_acc1
    list:
      - {batch_size: 32, grad_accum_steps: 1}
      - {batch_size: 16, grad_accum_steps: 2}
      - {batch_size: 64, grad_accum_steps: 1}
      - {batch_size: 32, grad_accum_steps: 2}
    contrasts:
      - {name: true_vs_accum_eff32, a: bs32_acc1, b: bs16_acc2, expect: a_better}
      - {name: true_vs_accum_eff64, a: bs64_acc1, b: bs32_acc2, expect: a_better}
  memory:
    question: Do more DataLoader workers or memory cleanup help?
    grid: {num_workers: [0, 2], cleanup_every: [0, 5]}
    fixed: {data_path: dataloader}
  scheduler:
    question: Which learning-rate schedule works best?
    baseline: none
    grid: {scheduler: [none, cosine, step]}
    fixed: {step_size: 1, gamma: 0.5}
  determinism:
    question: Does weight decay matter?
    baseline: wd0
    grid: {weight_decay: [0.0, 0.001]}
    fixed: {diagnostics_every: 50}  # more than the runs' 12 steps: no per-layer diagnostics
"""

# mean and seed SD of test_r2 per experiment; seeds get mean + sd * (1, -1, 0), so the SD
# over three seeds is exactly `sd`. Identical configurations get identical numbers.
LEVELS = {
    "batch_size-bs16": (0.95, 0.01),
    "batch_size-bs32": (0.93, 0.01),
    "batch_size-bs64": (0.80, 0.02),
    "batch_size-bs128": (0.60, 0.03),
    "lr_scaling-bs32_lr3e-4": (0.93, 0.01),
    "lr_scaling-bs64_lr6e-4": (0.92, 0.01),
    "lr_scaling-bs128_lr1.2e-3": (0.90, 0.02),
    "lr_scaling-bs32_lr1e-3": (0.91, 0.02),
    "grad_accumulation-bs32_acc1": (0.93, 0.01),
    "grad_accumulation-bs16_acc2": (0.925, 0.015),
    "grad_accumulation-bs64_acc1": (0.80, 0.02),
    "grad_accumulation-bs32_acc2": (0.79, 0.02),
    "memory-nw0_cl0": (0.90, 0.02),
    "memory-nw0_cl5": (0.905, 0.02),
    "memory-nw2_cl0": (0.90, 0.02),
    "memory-nw2_cl5": (0.895, 0.02),
    "scheduler-none": (0.93, 0.01),
    "scheduler-cosine": (0.94, 0.01),
    "scheduler-step": (0.70, 0.05),
    "determinism-wd0": (0.90, 0.0),
    "determinism-wd1e-3": (0.85, 0.0),
}
DIVERGED = {("scheduler-step", 2)}
Z = (1.0, -1.0, 0.0)
TARGET_VAR = 1.0e5  # variance of the regression target, to turn R2 into MSE
LAYERS = ["stem.0.weight", "stages.0.conv1.weight", "stages.1.conv1.weight", "head.4.weight"]


def lr_at(cfg, epoch):
    if cfg.scheduler == "cosine":
        return cfg.lr * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs)) / 2
    if cfg.scheduler == "step":
        return cfg.lr * cfg.gamma ** ((epoch - 1) // cfg.step_size)
    return cfg.lr


def write_run(run_dir: Path, exp, seed: int, r2: float | None, task: str, metric_key: str):
    """config.yaml, metrics.json, history.csv and layers.csv.gz as training writes them."""
    cfg = exp.config
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_dict(), "seed": seed}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    diverged = r2 is None
    epochs = 2 if diverged else (3 if seed == 1 else cfg.epochs)
    rng = np.random.default_rng(seed)
    final = 0.5 if diverged else r2
    history = []
    for e in range(1, epochs + 1):
        frac = e / cfg.epochs
        row = {
            "epoch": e,
            "train_loss": 1.2 - 0.9 * frac * final,
            "val_loss": 1.1 - 0.8 * frac * final + 0.02 * rng.random(),
            "lr": lr_at(cfg, e),
            "epoch_time_s": 1.5 + 0.1 * rng.random(),
            "data_time_s": 0.01,
            "samples_per_s": 200.0 + 5 * rng.random(),
            "grad_norm_mean": 3.0 / e,
            "grad_norm_cv": 0.3 + 0.05 * rng.random(),
            # undefined (|G|^2 estimated <= 0) in seed 1's last epoch, as happens in noisy runs
            "grad_noise_scale": math.nan
            if (seed == 1 and e == epochs)
            else 400.0 / e + 20 * rng.random(),
            "grad_variance": 20.0 / e,
        }
        if task == "regression":
            row |= {"val_r2": final * frac, "val_mse": (1 - final * frac) * TARGET_VAR}
        else:
            row |= {"val_accuracy": final * frac, "val_top5": min(1.0, final * frac + 0.3)}
        history.append(row)
    write_csv(run_dir / "history.csv", pd.DataFrame(history))
    # 84 training images (build_study's manifest); per-layer rows every diagnostics_every
    # optimizer steps, as Diagnostics records them: none when a run takes fewer steps
    steps_per_epoch = math.ceil(84 / cfg.effective_batch_size)
    steps = epochs * steps_per_epoch
    every = cfg.diagnostics_every
    recorded = list(range(every, steps + 1, every))[:4] if every else []
    layers = [
        {
            "step": s,
            "epoch": 1 + (s - 1) // steps_per_epoch,
            "layer": name,
            "grad_abs_mean": 10.0 ** (-2 - i * 0.4) * (1 + 0.1 * rng.random()),
            "update_ratio": 10.0 ** (-3 + 0.2 * i) * (1 + 0.1 * rng.random()),
        }
        for s in recorded
        for i, name in enumerate(LAYERS)
    ]
    columns = ["step", "epoch", "layer", "grad_abs_mean", "update_ratio"]
    write_csv(run_dir / "layers.csv.gz", pd.DataFrame(layers, columns=columns))
    metrics = {
        "status": "diverged" if diverged else "ok",
        "diverged_epoch": 2 if diverged else None,
        "task": task,
        "best_epoch": None if diverged else epochs - (seed == 1),
        "epochs_run": epochs,
        "stopped_early": (not diverged) and seed == 1,
        "train_time_s": 1.5 * epochs,
        "time_per_epoch_s": 1.5 + 0.01 * seed,
        "throughput_samples_per_s": 200.0,
        "data_wait_fraction": 0.01,
        "peak_memory_mb": 800.0 + cfg.batch_size,
        "peak_memory_kind": "cpu_peak_rss",
        "parameters": 1260129,
        "model_size_mb": 4.8,
        "flops_forward_per_sample": 3.4e7,
        "flops_train_per_sample": 1.0e8,
        "device": "cpu",
        "device_name": "cpu",
        "torch_version": "2.13.0",
        "hostname": "node01",
        "job_id": f"{1000 + seed}.pbs",
        "wall_time_s": 9.0,
        "optimizer_steps": steps,
        "prepared_sha256": "ab" * 32,
        "config_hash": "x",
    }
    if not diverged:
        if task == "regression":
            mse = (1 - r2) * TARGET_VAR
            metrics |= {
                "test_r2": r2,
                "test_mse": mse,
                "test_rmse": math.sqrt(mse),
                "test_mae": 0.8 * math.sqrt(mse),
            }
        else:
            metrics |= {
                "test_accuracy": r2,
                "test_top5": min(1.0, r2 + 0.2),
                "test_loss": 2.5 * (1 - r2),
            }
        metrics["memory_efficiency"] = metrics[metric_key] / (metrics["peak_memory_mb"] / 1024)
    write_json(run_dir / "metrics.json", metrics)


def build_results(
    root: Path,
    study_text: str,
    levels: dict | None = None,
    task: str = "regression",
    diverged=DIVERGED,
) -> dict[str, Path]:
    """A results folder as the workflow's aggregate step leaves it (run folders, extract
    records, summary.csv, verdicts.csv, ...); `levels` default: LEVELS."""
    levels = LEVELS if levels is None else levels
    name = yaml.safe_load(study_text)["name"]
    study_file = root / "studies" / f"{name}.yaml"
    study_file.parent.mkdir(parents=True)
    study_file.write_text(study_text)
    study = load_study(study_file)
    prepared = root / "prepared" / "prepared.pt"
    prepared.parent.mkdir()
    write_json(
        prepared.with_name("manifest.json"),
        {
            "task": task,
            "content_sha256": "ab" * 32,
            "source_sha256": "cd" * 32,
            "n_samples": 120,
            "split_sizes": {"train": 84, "val": 18, "test": 18},
            "image_shape": [1, 32, 32],
            "source": "synthetic",
            "data_quality": [],
            "num_classes": 10 if task == "classification" else 0,
        },
    )
    metric_key = "test_r2" if task == "regression" else "test_accuracy"
    records, attempts = [], []
    res = root / "results" / name
    bench = root / "results" / "benchmarks" / "train" / name
    bench.mkdir(parents=True)
    for i, (cfg_id, exps) in enumerate(study.configs().items()):
        exp = exps[0]  # experiments sharing a configuration share its runs
        mean, sd = levels[exp.id]
        for seed in study.seeds:
            broken = any((e.id, seed) in diverged for e in exps)
            value = None if broken else mean + sd * Z[seed]
            run = res / "runs" / cfg_id / f"seed{seed}"
            write_run(run, exp, seed, value, task, metric_key)
            add_attempt(run / "metrics.json", ATTEMPT_START + ATTEMPT_EVERY_S * len(attempts))
            attempts.append(run)
        if i < 2:  # benchmarks of some jobs only: gaps are fine
            (bench / f"{cfg_id}.tsv").write_text(
                "s\th:m:s\tmax_rss\tmax_vms\n12.5\t0:00:12\t790.1\t3500.0\n"
            )
        record = res / "records" / f"{cfg_id}.json"
        write_extract(
            res / "runs" / cfg_id,
            cfg_id,
            study.seeds,
            bench / f"{cfg_id}.tsv",
            record,
            record.with_suffix(".curves.csv"),
            record.with_suffix(".layers.csv.gz"),
        )
        records.append(record)
    stems = [str(r).removesuffix(".json") for r in records]
    aggregate_study(
        study_file,
        prepared,
        records,
        res / "summary.csv",
        res / "study.json",
        res / "groups",
        out_stats=res / "stats.json",
        curves=[f"{s}.curves.csv" for s in stems],
        layers=[f"{s}.layers.csv.gz" for s in stems],
        out_curves=res / "curves.csv.gz",
        out_layers=res / "layers.csv.gz",
        out_verdicts=res / "verdicts.csv",
        out_recommended=res / "recommended.yaml",
        out_timeline=res / "timeline.csv",
        out_compute=res / "compute.csv",
    )
    write_csv(res / "experiments.tsv", study.table())
    return {"results": res, "study_file": study_file}


ATTEMPT_START, ATTEMPT_EVERY_S, ATTEMPT_WALL_S, ATTEMPT_THREADS = 1.7e9, 45, 40.0, 2


def add_attempt(metrics_json: Path, start: float) -> None:
    """The attempt record training keeps (hpstudy.attempts): one finished attempt of
    ATTEMPT_WALL_S on node01 with ATTEMPT_THREADS CPU threads, outside a batch job."""
    from hpstudy.attempts import FINISHED

    metrics = json.loads(metrics_json.read_text())
    metrics["attempt_records"] = [
        {
            "attempt": 1,
            "start": start,
            "end": start + ATTEMPT_WALL_S,
            "wall_s": ATTEMPT_WALL_S,
            "host": "node01",
            "job_id": None,
            "ended": FINISHED,
            "submitted": None,
            "threads": ATTEMPT_THREADS,
            "device": "cpu",
            "gpu": None,
        }
    ]
    write_json(metrics_json, metrics)


def build_study(
    root: Path, study_text: str, levels: dict, task: str = "regression", diverged=frozenset()
) -> dict[str, Path]:
    """A results folder as the workflow leaves it, and its rendered report."""
    res = build_results(root, study_text, levels, task, diverged)["results"]
    name = res.name
    out = root / "reports" / name
    groups = {p.stem: p for p in sorted((res / "groups").glob("*.csv"))}
    render(
        res / "study.json",
        res / "summary.csv",
        groups,
        out / "report.md",
        out / "report.html",
        out / "figures",
        stats_json=res / "stats.json",
        curves=res / "curves.csv.gz",
        layers=res / "layers.csv.gz",
        experiments=res / "experiments.tsv",
    )
    return {
        "results": res,
        "report": out / "report.md",
        "html": out / "report.html",
        "figures": out / "figures",
    }


# `synth` (tests/conftest.py): STUDY's results and report, built once for every module


def referenced_images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def check_figures(paths: dict[str, Path]) -> list[str]:
    """Every PNG in figures/ is valid, non-empty and referenced by report.md and .html."""
    text = paths["report"].read_text()
    html = paths["html"].read_text()
    refs = referenced_images(text)
    assert len(refs) == len(set(refs)), "a figure is referenced twice"
    files = sorted(p.name for p in paths["figures"].glob("*.png"))  # not .snakemake_timestamp
    assert sorted(Path(r).name for r in refs) == files
    for ref in refs:
        path = paths["report"].parent / ref
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", ref
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            width, height = img.size
            extrema = img.convert("L").getextrema()
        assert width > 300 and height > 200, (ref, img.size)
        assert extrema[0] < extrema[1], f"{ref} is blank"
    # report.html is self-contained: the same figures, in the same order, as data URIs
    sources = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', html)
    assert sources == [
        "data:image/png;base64,"
        + base64.b64encode((paths["report"].parent / ref).read_bytes()).decode()
        for ref in refs
    ]
    return files


def test_every_figure_is_a_valid_png_referenced_by_the_report(synth):
    files = check_figures(synth)
    expected = {
        "overview.png",
        "factor_batch_size_batch_size.png",
        "lr_vs_metric.png",
        "accumulation_grad_accumulation.png",
        "workers_cleanup_memory.png",
        "scheduler_scheduler.png",
        "lr_schedules.png",
        "early_stopping.png",
        "cost.png",
        "gradflow_best.png",
        "factor_determinism_weight_decay.png",
    }
    expected |= {
        f"{kind}_{g}.png"
        for kind in ("curves", "gradients", "gradflow")
        for g in (
            "batch_size",
            "lr_scaling",
            "grad_accumulation",
            "memory",
            "scheduler",
            "determinism",
        )
    } - {"gradflow_determinism.png"}  # 12 optimizer steps < diagnostics_every = 50
    assert expected <= set(files), expected - set(files)
    assert "gradflow_determinism.png" not in files


def test_figures_read_cleanly(synth):
    """No two labels of any report figure overlap (titles, axis and tick labels, colour
    bars), and every figure has a title of its own (gradients_* is not "per-epoch curves")."""
    assert synth["overlaps"] == []
    titles = {}
    for png in sorted(synth["figures"].glob("*.png")):
        with Image.open(png) as img:
            titles[png.name] = img.text["Title"]
    assert all(titles.values()), titles
    assert len(set(titles.values())) == len(titles), titles
    assert "gradient statistics per epoch" in titles["gradients_batch_size.png"]
    assert "per-epoch curves" in titles["curves_batch_size.png"]


def group_section(text: str, group: str) -> str:
    return text.split(f"## Group `{group}`")[1].split("\n## ")[0]


def test_report_says_which_groups_and_levels_have_no_gradient_diagnostics(synth):
    """Runs with fewer optimizer steps than diagnostics_every record no per-layer rows; the
    report names them and says how to get the diagnostics, instead of dropping them."""
    text = synth["report"].read_text()
    determinism = group_section(text, "determinism")
    assert (
        "**No gradient-flow diagnostics for group `determinism`:** its runs took at most 12 "
        "optimizer steps, fewer than `diagnostics_every` = 50" in determinism
    )
    assert "lower `diagnostics_every` to 12 or less" in determinism
    # 84 images: bs64 takes 2 steps per epoch, bs128 one; 8 and 4 steps < 10
    batch = group_section(text, "batch_size")
    assert "No gradient-flow diagnostics for `bs64`, `bs128` (left out of the" in batch
    assert "at most 8 optimizer steps, fewer than `diagnostics_every` = 10" in batch
    assert "No gradient-flow diagnostics" not in group_section(text, "scheduler")


def test_primary_table_first_with_few_columns_then_the_rest(synth):
    text = synth["report"].read_text()
    for group in ("batch_size", "memory", "grad_accumulation"):
        tables = [
            block.splitlines()
            for block in group_section(text, group).split("\n\n")
            if block.startswith("| experiment |")
        ]
        primary, other = tables[0], tables[1]
        header = [c.strip() for c in primary[0].strip("|").split("|")]
        assert len(header) <= 8, header
        assert header[0] == "experiment" and "test_r2 (mean ± SD)" in header
        assert "95% CI" in header and "runs ok" in header
        assert not any(c.startswith("test_mse") for c in header)
        rest = [c.strip() for c in other[0].strip("|").split("|")]
        assert "test_mse (mean ± SD) [95% CI]" in rest and "optimizer steps" in rest
        assert len(primary) == len(other)  # the same experiments, row for row


def test_report_states_units_and_settings_ignored_on_the_device(synth):
    from hpstudy.config import DEVICE_SETTINGS

    text = synth["report"].read_text()
    assert "the models predict the microbead density per image, in beads/mm²" in text
    assert "**test_r2**: unitless" in text and "test_mse: (beads/mm²)²" in text
    assert "Units of test_r2: unitless" in group_section(text, "batch_size")
    # every synthetic run ran on CPU with the default channels_last=True
    line = next(ln for ln in text.splitlines() if ln.startswith("- **Ignored on the device"))
    assert (
        f"`channels_last=True` on cpu in 63 of 63 runs ({DEVICE_SETTINGS['channels_last']})" in line
    )
    assert "mixed_precision" not in line  # not asked for


def test_design_line_counts_rows_and_the_trainings_behind_them(synth):
    import pandas as pd

    summary = pd.read_csv(synth["results"] / "summary.csv")
    trained = len(summary.drop_duplicates(["config_hash", "seed"]))
    ok = int((summary["status"] == "ok").sum())
    line = next(ln for ln in synth["report"].read_text().splitlines() if "**Design:**" in ln)
    assert line.endswith(f", {ok} finished normally.")
    if trained < len(summary):  # shared baselines: the sequential rounds count trainings
        assert f": {len(summary)} runs ({trained} trainings: experiments that share a" in line
    else:
        assert f": {len(summary)} runs, " in line and "trainings" not in line


def test_b_noise_says_how_many_seeds_it_is_from(synth):
    text = synth["report"].read_text()
    row = {ln.split(" |")[0]: ln for ln in text.splitlines() if " | 1,260,129 | " in ln}
    assert len(row) == 21
    # seed 1's last epoch has no B_noise; seed 2 of scheduler-step diverged (not finished)
    assert "(2/3 seeds)" in row["| `batch_size-bs16`"]
    assert "(1/2 seeds)" in row["| `scheduler-step`"]


def test_the_overlap_check_sees_labels_that_run_together_and_saving_slants_them(tmp_path):
    from hpstudy import figures  # Agg, as the workflow draws

    fig, ax = figures.plt.subplots(figsize=(3, 2.5), layout="constrained")
    names = ["bs32_acc1", "bs16_acc2", "bs64_acc1", "bs32_acc2", "bs128_lr1.2e-3"]
    ax.plot(range(5), range(5))
    ax.set_xticks(range(5), labels=names)
    fig.draw_without_rendering()
    assert figures.overlapping_labels(fig), "run-together tick labels not seen"
    with warnings.catch_warnings():
        warnings.simplefilter("error", figures.FigureOverlapWarning)
        figures.save(fig, tmp_path / "ticks.png")  # slants them until they read cleanly
    assert figures.overlapping_labels(fig) == []
    assert {t.get_rotation() for t in ax.get_xticklabels()} <= {45.0, 90.0}


def test_epoch_axes_have_integer_ticks(synth):
    """Two or three epochs: the default locator would put ticks at 1.25, 1.5, 1.75."""
    from hpstudy import figures

    curves = pd.read_csv(synth["results"] / "curves.csv.gz")
    summary = pd.read_csv(synth["results"] / "summary.csv")
    short = curves[curves["epoch"] <= 2]
    drawn = [
        figures.learning_curves_figure(short, "scheduler", ["train_loss", "val_r2"]),
        # one epoch (a 1-epoch group): a locator alone would tick at 0.99, 1.005, ...
        figures.learning_curves_figure(curves[curves["epoch"] == 1], "memory", ["val_loss"]),
        figures.learning_curves_figure(short, "scheduler", ["grad_norm_mean"]),
        figures.scheduler_comparison_figure(
            summary[summary["group"] == "scheduler"],
            short[short["group"] == "scheduler"],
            "test_r2",
        ),
    ]
    checked = 0
    for fig in drawn:
        fig.draw_without_rendering()
        for ax in fig.axes:
            if ax.get_xlabel() == "epoch":
                lo, hi = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
                assert ticks and all(float(t).is_integer() for t in ticks), ticks
                checked += 1
    assert checked == 5


def test_categorical_factors_get_no_connecting_line(synth):
    """A line joins means of a numeric factor only; optimizers are categories."""
    from hpstudy import figures

    summary = pd.read_csv(synth["results"] / "summary.csv")
    runs = summary[summary["group"] == "batch_size"].copy()

    def joining_lines(fig, n_levels):
        ax = fig.axes[0]
        return [
            ln
            for ln in ax.lines
            if len(ln.get_xdata()) == n_levels and ln.get_linestyle() not in ("None", "none", "")
        ]

    numeric = figures.factor_effect_figure(runs, "batch_size", "test_r2", None, "bs")
    assert len(joining_lines(numeric, 4)) == 1
    runs["optimizer"] = runs["batch_size"].map({16: "sgd", 32: "adamw", 64: "adam", 128: "rmsprop"})
    categorical = figures.factor_effect_figure(runs, "optimizer", "test_r2", None, "opt")
    assert joining_lines(categorical, 4) == []
    assert len(categorical.axes[0].collections) >= 1  # the means are still drawn as points


def test_cost_dots_are_named_and_axes_have_units(synth):
    from hpstudy import figures

    summary = pd.read_csv(synth["results"] / "summary.csv")
    fig = figures.cost_figure(summary, "test_r2")
    ok = summary[summary["status"] == "ok"]
    names = sorted(ok.groupby("experiment")["label"].first())  # one dot per experiment
    for ax, unit in zip(fig.axes, ("(s)", "(MiB)", "(samples/s)"), strict=True):
        assert sorted(t.get_text() for t in ax.texts) == names
        assert ax.get_xlabel().endswith(unit)
    boxes = [t.get_window_extent() for t in fig.axes[1].texts]
    overlapping = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert overlapping <= len(boxes) // 4  # greedy placement: few, if any, collide


def report_verdicts(text: str) -> dict[tuple[str, str], str]:
    """(group, contrast) -> verdict, from the report's answers table."""
    return {
        (m[1], m[2]): m[3]
        for m in re.finditer(
            r"^\| `(\w+)` / `([^`]+)` \| [^|]* \| [^|]* \| \*\*([a-z ]+)\*\*[^|]*\|", text, re.M
        )
    }


def test_verdicts_csv_matches_the_report(synth):
    verdicts = pd.read_csv(synth["results"] / "verdicts.csv", keep_default_na=False)
    text = synth["report"].read_text()
    in_report = report_verdicts(text)
    assert in_report == {(r.group, r.contrast): r.verdict for r in verdicts.itertuples()}, (
        "the report's verdict table is not verdicts.csv"
    )
    for r in verdicts.itertuples():
        if r.estimate != "":
            assert fmt_signed(float(r.estimate)) in text
    # the synthetic effects land where they were built
    v = verdicts.set_index(["group", "contrast"])["verdict"]
    assert v[("batch_size", "(group)")] == "supported"  # R2 falls as batch size grows
    # seeds are built as mean + sd * z: 0.80 vs 0.79 at equal SD is the same +0.01 on every
    # seed (paired: supported); 0.93 vs 0.925 with unequal SD is noisy (inconclusive)
    assert v[("grad_accumulation", "true_vs_accum_eff64")] == "supported"
    assert v[("grad_accumulation", "true_vs_accum_eff32")] == "inconclusive"
    seeds = verdicts.set_index("contrast").loc["true_vs_accum_eff32", "seeds_needed"]
    assert float(seeds) > 3
    assert v[("memory", "main:num_workers")] != "differs"
    assert {("memory", "interaction:num_workers:cleanup_every")} <= set(v.index)
    assert v[("scheduler", "(group)")] == "differs"
    assert "**Rule.**" in text and "**Worked example.**" in text
    # deviations from the reproduced report are listed under "What was run"
    assert "| `base.patience` | 15 | 2 | a short synthetic run |" in text
    # recommended.yaml's settings load back as a training config, lists as lists
    rec = yaml.safe_load((synth["results"] / "recommended.yaml").read_text())["recommended"]
    assert isinstance(rec["settings"]["augment"], list)
    assert TrainConfig.from_dict({**rec["settings"], "seed": 0}).lr == rec["settings"]["lr"]


def test_figure_intervals_equal_table_intervals(synth):
    from hpstudy import figures

    summary = pd.read_csv(synth["results"] / "summary.csv")
    doc = json.loads((synth["results"] / "study.json").read_text())
    stats = json.loads((synth["results"] / "stats.json").read_text())
    groups = {g: spec["experiments"] for g, spec in doc["groups"].items()}
    fig = figures.overview_figure(summary, groups, "test_r2", stats["levels"])
    for ax, (group, exps) in zip(fig.axes, groups.items(), strict=False):
        segments = ax.containers[0].lines[2][0].get_segments()
        table = pd.read_csv(synth["results"] / "groups" / f"{group}.csv").set_index("experiment")
        for exp, seg in zip(exps, segments, strict=True):
            lo, hi = seg[0][1], seg[1][1]
            if math.isfinite(lo):
                # the report's table clips R2 intervals at 1 (and says so); so does the figure
                assert (lo, hi) == pytest.approx(
                    (table.loc[exp, "test_r2_ci_low"], min(1.0, table.loc[exp, "test_r2_ci_high"]))
                ), (group, exp)
    # the seaborn figures use the same t-interval
    values = [0.9, 0.93, 0.95]
    lo, hi = st.t.interval(0.95, 2, loc=np.mean(values), scale=st.sem(values))
    assert figures.t_ci(values) == pytest.approx((lo, hi))


CLASSIFICATION = """
name: cls
seeds: 3
dataset: {name: cifar10}
base: {epochs: 4, batch_size: 64, lr: 1.0e-3, patience: 2}
groups:
  lr:
    question: Does a larger learning rate help?
    baseline: lr1e-3
    grid: {lr: [1.0e-3, 3.0e-3, 1.0e-2]}
"""


def test_classification_report_uses_accuracy_top5_and_loss(tmp_path):
    levels = {"lr-lr1e-3": (0.60, 0.01), "lr-lr3e-3": (0.70, 0.01), "lr-lr0.01": (0.5, 0.02)}
    paths = build_study(tmp_path, CLASSIFICATION, levels, task="classification")
    text = paths["report"].read_text()
    assert "primary metric **test_accuracy**" in text
    for column in ("test_accuracy (mean ± SD)", "test_top5 (mean ± SD)", "test_loss (mean ± SD)"):
        assert column in text
    assert "test_r2" not in text
    files = check_figures(paths)
    assert {"curves_lr.png", "factor_lr_lr.png", "lr_vs_metric.png"} <= set(files)
    verdicts = report_verdicts(text)
    assert verdicts[("lr", "(group)")] == "differs"


TINY = """
name: tiny
description: Three seeds of two batch sizes, the smallest real study with statistics.
seeds: 3
dataset:
  name: microbeads
  image_size: 32
  split: {method: random, train: 0.6, val: 0.2, test: 0.2, seed: 1}
base: {epochs: 2, batch_size: 16, diagnostics_every: 2}
groups:
  batch_size:
    question: Do smaller batches give better R2?
    baseline: bs16
    grid: {batch_size: [8, 16]}
"""


@pytest.mark.slow
def test_real_workflow_report_with_three_seeds(tmp_path):
    from conftest import run_snakemake, write_workdir

    work = write_workdir(tmp_path, TINY, synthetic={"n_images": 40, "image_size": 32, "seed": 0})
    run_snakemake(work, "--cores", "2", timeout=1500)
    res, rep = work / "results" / "tiny", work / "reports" / "tiny"
    paths = {
        "results": res,
        "report": rep / "report.md",
        "html": rep / "report.html",
        "figures": rep / "figures",
    }
    files = check_figures(paths)
    assert {
        "overview.png",
        "factor_batch_size_batch_size.png",
        "curves_batch_size.png",
        "gradflow_batch_size.png",
        "early_stopping.png",
    } <= set(files)
    summary = pd.read_csv(res / "summary.csv")
    assert len(summary) == 6 and set(summary["seed"]) == {0, 1, 2}
    verdicts = report_verdicts(paths["report"].read_text())
    table = pd.read_csv(res / "verdicts.csv", keep_default_na=False)
    assert verdicts == {(r.group, r.contrast): r.verdict for r in table.itertuples()}
    assert (res / "recommended.yaml").is_file()
    # Snakemake's own HTML report from the report() tags
    run_snakemake(work, "--report", str(tmp_path / "snakemake_report.html"), timeout=600)
    assert (tmp_path / "snakemake_report.html").stat().st_size > 10_000
