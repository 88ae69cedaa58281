"""Sections `main` and `workflow`: whole studies through Snakemake. `main`: the README's
main job from an empty results folder next to the cost estimate; `workflow`: the quick study
end to end for this tree and for --base side by side (wall time, train jobs, per-run
overhead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sections.common import REPO, Table


def bench_main(table: Table, work: Path, study: str = "quick") -> None:
    """The README's main job from an empty results folder: wall time vs the estimate."""
    import yaml

    from hpstudy import cost
    from hpstudy.study import load_study

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        study=study,
        studies_dir=str(REPO / "config" / "studies"),
        results_dir=str(work / "main" / "results"),
        reports_dir=str(work / "main" / "reports"),
    )
    (work / "main").mkdir(parents=True, exist_ok=True)
    (work / "main" / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = load_study(REPO / "config" / "studies" / f"{study}.yaml")
    cal = cost.Calibration(threads=1)
    runs = cost.estimate_study(loaded, cal, config["synthetic"]["n_images"])
    parallel = os.cpu_count() or 1
    estimate = sum(r.wall_s for r in runs) * len(loaded.seeds) / parallel
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work / "main"),
            "--configfile",
            str(work / "main" / "config.yaml"),
            "--cores",
            "all",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    note = f"snakemake --cores all ({parallel} CPUs), study {study}, empty results folder"
    if proc.returncode:
        note += f"; FAILED (exit {proc.returncode})"
    table.add("main", study, "wall_time", elapsed, "s", note)
    table.add(
        "main",
        study,
        "estimate_training",
        estimate,
        "s",
        f"hpstudy.cost: {len(runs) * len(loaded.seeds)} runs, {parallel} at once "
        f"(training only; {cal.machine})",
    )


def workflow_numbers(folder: Path, study: str) -> dict[str, float]:
    """Train jobs, their summed wall time (Snakemake benchmark files) and the runs' training
    time (metrics.json: the Trainer's wall time and its epochs' time) of a finished study.
    Works for both layouts: a job per run (runs/{exp}/seed{N}) or per configuration."""
    results = folder / "results"
    jobs = sorted((results / "benchmarks" / "train" / study).rglob("*.tsv"))
    job_wall = sum(float(f.read_text().splitlines()[-1].split("\t")[0]) for f in jobs)
    runs = [json.loads(m.read_text()) for m in (results / study / "runs").rglob("metrics.json")]
    return {
        "train_jobs": len(jobs),
        "runs": len(runs),
        "job_wall_s": job_wall,
        "fit_wall_s": sum(r["wall_time_s"] for r in runs),
        "epochs_s": sum(r["train_time_s"] for r in runs),
    }


def bench_workflow(table: Table, work: Path, base: str, cores: int, study: str = "quick") -> None:
    """The quick study end to end, this tree and `base` side by side (same machine, one after
    the other, each in a fresh folder with its own generated data)."""
    trees = {"this_tree": REPO}
    base_tree = work / "base-tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), base],
        check=True,
        capture_output=True,
    )
    trees[f"base_{base[:10]}"] = base_tree
    try:
        for label, tree in trees.items():
            folder = work / f"workflow-{label}"
            load0 = os.getloadavg()[0]
            wall = run_tree(tree, folder, study, cores, label)
            note = f"{study} study, --cores {cores}; load average {load0:.1f} at the start"
            add_tree_rows(table, label, workflow_numbers(folder, study), wall, note)
        rows = {
            r["case"]: float(r["value"])
            for r in table.rows
            if r["section"] == "workflow" and r["metric"] == "end_to_end"
        }
        this, other = rows["this_tree"], rows[f"base_{base[:10]}"]
        table.add(
            "workflow", "this_vs_base", "end_to_end_ratio", this / other, "x", "target <= 0.6"
        )
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
            capture_output=True,
        )


def run_tree(tree: Path, folder: Path, study: str, cores: int, label: str) -> float:
    """Seconds `snakemake --cores N` of `tree` takes for `study` in a fresh `folder` (each
    tree with its own package on PYTHONPATH)."""
    import yaml

    (folder / "studies").mkdir(parents=True)
    (folder / "studies" / f"{study}.yaml").write_text(
        (tree / "config" / "studies" / f"{study}.yaml").read_text()
    )
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "study": study,
                "studies_dir": str(folder / "studies"),
                "results_dir": str(folder / "results"),
                "reports_dir": str(folder / "reports"),
            }
        )
    )
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [
        str(exe) if exe.exists() else "snakemake",
        "--snakefile",
        str(tree / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(folder / "config.yaml"),
        "--cores",
        str(cores),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}  # each tree its own package
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: snakemake failed:\n{proc.stderr[-3000:]}")
    return wall


def add_tree_rows(table: Table, label: str, n: dict[str, float], wall: float, note: str) -> None:
    """One tree's rows: wall time, train jobs, and the per-run overhead they imply."""
    table.add("workflow", label, "end_to_end", wall, "s", note)
    table.add("workflow", label, "train_jobs", n["train_jobs"], "jobs", f"{n['runs']} runs")
    table.add(
        "workflow",
        label,
        "train_jobs_wall",
        n["job_wall_s"],
        "s",
        "sum over the train jobs (Snakemake benchmark files)",
    )
    table.add(
        "workflow",
        label,
        "runs_fit_wall",
        n["fit_wall_s"],
        "s",
        "sum over the runs of the Trainer's wall time (metrics.json wall_time_s)",
    )
    table.add(
        "workflow",
        label,
        "overhead_per_run",
        (n["job_wall_s"] - n["fit_wall_s"]) / max(n["runs"], 1),
        "s",
        "(train jobs' wall - runs' fit wall) / runs; target <= 2 s",
    )
    table.add(
        "workflow",
        label,
        "overhead_per_run_vs_epochs",
        (n["job_wall_s"] - n["epochs_s"]) / max(n["runs"], 1),
        "s",
        "(train jobs' wall - runs' epoch-loop time) / runs: also counts "
        "evaluation, checkpoints and model set-up",
    )
