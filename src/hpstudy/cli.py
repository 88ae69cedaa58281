"""The `hpstudy` command: every way in for a user, as subcommands of one parser.

    hpstudy check STUDY.yaml [...]          validate study files and print what they cost
    hpstudy status [STUDY ...] [--watch]    where a running study stands
    hpstudy calibrate STUDY.yaml --out F    time training steps here: a device profile
    hpstudy analyze STUDY.yaml RUNS.csv     answer a study's questions from any table of runs
    hpstudy simulate sequential [...]       error rates and runs saved, simulated
    hpstudy simulate analysis [...]         the verdict rule's false claims and power
    hpstudy gpuslots count|status|run       GPU slots of a workstation (profiles/local)

The studies themselves run through Snakemake. Each subcommand is an `_add_*` function
(its arguments) and a `cmd_*` function (the calls into the library); no other module of
the package parses a command line. `python -m hpstudy` runs the same command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PROG = "hpstudy"
COMMANDS = {  # name: its line in `hpstudy --help`
    "check": "validate study files and print what they cost",
    "status": "where a running study stands: runs by state, failures, ETA",
    "calibrate": "time training steps here and write a device profile",
    "analyze": "answer a study's questions from a table of runs made anywhere",
    "simulate": "simulate a study design: false claims and runs saved",
    "gpuslots": "GPU slots of a workstation: count, status, run CMD in one",
}


def _shipped() -> str:
    from hpstudy.studyfile import shipped_studies

    return ", ".join(shipped_studies()) or "none"


# --------------------------------------------------------------------------- check


def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help=COMMANDS["check"],
        description="Check study files before running them: each is validated (schema, "
        "configs, ids) and printed as a table of its groups x experiments x seeds, then "
        "what it costs (runs, training FLOPs, expected time here and, with "
        "--device-profile, on that device). Exit status 2 and the reason on stderr for "
        f"the first invalid file. Shipped studies: config/studies/NAME.yaml ({_shipped()}).",
    )
    p.add_argument("studies", nargs="+", metavar="STUDY.yaml")
    p.add_argument(
        "--device-profile",
        metavar="FILE",
        default=None,
        help="also estimate on the device this calibration was made on "
        "(hpstudy calibrate STUDY.yaml --out FILE)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1)")
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="runs at once for the time here (default: CPU cores / threads)",
    )
    p.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="images of your microbead folder (default: the generated 1948 at 256 px, "
        "one channel: the split, batch and image checks assume them)",
    )
    p.add_argument("--no-cost", action="store_true", help="only check the files")
    p.set_defaults(run=cmd_check)


def _load_studies(names: list[str]) -> list | None:
    """The studies named on the command line; None (and the reason on stderr) for the
    first invalid one."""
    from hpstudy.study import load_study
    from hpstudy.studyfile import StudyError

    studies = []
    for name in names:
        try:
            studies.append(load_study(name))
        except StudyError as err:
            print(f"hpstudy: invalid study: {err}", file=sys.stderr)
            return None
    return studies


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_check(args: argparse.Namespace) -> int:
    from hpstudy.data_checks import GENERATED, Source
    from hpstudy.study import describe, load_study
    from hpstudy.studyfile import StudyError

    # the microbead images the checks assume: the generated set, or --n-images of a folder
    source = Source(images=args.n_images) if args.n_images else GENERATED
    studies = []
    for name in args.studies:  # each is printed before the next is read
        try:
            study = load_study(name, source=source, log=_say)
        except StudyError as err:
            print(f"hpstudy: invalid study: {err}", file=sys.stderr)
            return 2
        for warning in study.warnings:
            _say(f"hpstudy: warning: {warning}")
        print(describe(study))
        studies.append(study)
    if args.no_cost:
        return 0
    from hpstudy import cost

    parallel = args.parallel or max((os.cpu_count() or 1) // args.threads, 1)
    here = cost.Calibration(threads=args.threads)
    for study in studies:
        runs = cost.estimate_study(study, here, args.n_images)
        print(cost.report(study, runs, here, parallel=parallel))
        if args.device_profile:
            there = cost.Calibration(device_profile=args.device_profile)
            print(cost.report(study, cost.estimate_study(study, there, args.n_images), there))
    return 0


# --------------------------------------------------------------------------- status


def _add_status(sub) -> None:
    p = sub.add_parser(
        "status",
        help=COMMANDS["status"],
        description="Where a study stands while Snakemake runs it (reads files only; takes "
        "no lock). Runs finished / running / waiting / failed / diverged, the scheduler job "
        "of each running run, and an ETA from the finished runs' times.",
    )
    p.add_argument("study", nargs="*", help="study name(s) (default: config's `study`)")
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=30.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 30) until nothing is left",
    )
    p.add_argument("--results", help="results folder (default: config's results_dir)")
    p.add_argument("--studies", help="study files (default: config's studies_dir)")
    p.add_argument(
        "--seeds",
        help="the seeds the workflow runs with (its --config seeds=..., e.g. "
        "'{initial: 3, max: 10, step: 2}'; default: config's `seeds`, else the study "
        "file's, or the plan of the study's round files)",
    )
    p.add_argument(
        "--configfile",
        default="config/config.yaml",
        help="workflow config to take the defaults from",
    )
    p.set_defaults(run=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    import time

    import yaml

    from hpstudy.status import render, study_status
    from hpstudy.studyfile import StudyError, parse_seeds_override

    config = {}
    if Path(args.configfile).is_file():
        config = yaml.safe_load(Path(args.configfile).read_text()) or {}
    studies = args.study or [s for s in str(config.get("study", "quick")).split(",") if s]
    results = Path(args.results or config.get("results_dir", "results"))
    studies_dir = Path(args.studies or config.get("studies_dir", "config/studies"))
    try:
        seeds = parse_seeds_override(args.seeds or config.get("seeds"))
    except StudyError as err:
        print(f"hpstudy status: {err}", file=sys.stderr)
        return 2
    while True:
        try:
            reports = [study_status(s, results, studies_dir, seeds=seeds) for s in studies]
        except StudyError as err:  # a missing or invalid study file: the message says which
            print(f"hpstudy status: {err}", file=sys.stderr)
            return 2
        text = "\n\n".join(render(r) for r in reports)
        if args.watch:
            print("\033[H\033[J" + time.strftime("%H:%M:%S ") + text, flush=True)
        else:
            print(text)
        if not args.watch or all(r.done for r in reports):
            return 0
        time.sleep(args.watch)


# --------------------------------------------------------------------------- calibrate


def _add_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help=COMMANDS["calibrate"],
        description="Run on a GPU node: time a few real training steps of every run shape "
        "of the studies on this machine and write them to a device profile, which "
        "`hpstudy check --device-profile FILE` and the cluster walltimes "
        "(profiles/walltime.yaml: device_profile) then use.",
    )
    p.add_argument("studies", nargs="+", metavar="STUDY.yaml")
    p.add_argument("--out", required=True, metavar="FILE", help="device profile to write")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1)")
    p.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="images of your microbead folder (default: the generated 1948)",
    )
    p.set_defaults(run=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from hpstudy import cost

    studies = _load_studies(args.studies)
    if studies is None:
        return 2
    cal = cost.calibrate(studies, args.out, args.threads, args.n_images)
    print(f"{args.out}: {len(cal.entries)} shapes on {cal.machine}")
    return 0


# --------------------------------------------------------------------------- analyze


def _add_analyze(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help=COMMANDS["analyze"],
        description="Answer a study's questions from a table of runs made anywhere (a W&B "
        "or MLflow export, a script's CSV; docs/report.md has the column mappings) with the "
        "code of the workflow's aggregate step: verdicts.csv, recommended.yaml, stats.json "
        "and report.md in --out. The table: one row per run with `experiment` (the ids of "
        "experiments.tsv, e.g. batch_size-bs16), `seed`, the metric columns (test_r2, "
        "test_accuracy, ...) and optionally `status` (finished / diverged / failed). Exit "
        "status 2 and the reason on stderr for a bad study file or table.",
    )
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("runs", metavar="RUNS.csv", help="the table of runs (.csv, or .tsv)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the answers")
    p.set_defaults(run=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from hpstudy import analyze
    from hpstudy.studyfile import StudyError

    try:
        result = analyze.analyse(args.study, analyze.read_runs(args.runs), source=args.runs)
    except StudyError as err:
        print(f"hpstudy analyze: invalid study: {err}", file=sys.stderr)
        return 2
    except analyze.RunsError as err:
        print(f"hpstudy analyze: {err}", file=sys.stderr)
        return 2
    paths = analyze.write(result, args.out)
    counts = result["verdicts"]["verdict"].value_counts()
    print(
        f"{result['study']}: {len(result['verdicts'])} questions from {len(result['runs'])} "
        "runs: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    )
    for path in paths.values():
        print(f"  {path}")
    return 0


# --------------------------------------------------------------------------- simulate


def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help=COMMANDS["simulate"],
        description="Simulated studies with known truth: how often a design claims an "
        "effect, and what it costs.",
    )
    designs = p.add_subparsers(dest="design", required=True, metavar="DESIGN")
    seq = designs.add_parser(
        "sequential",
        help="sequential seeds against fixed max seeds (docs/report.md)",
        description="Sequential seeds (`seeds: {initial, max, step}`) against a fixed design "
        "with max seeds and against testing at 0.05 at every look: claim rates, agreement "
        "and runs used, over scenarios of effect and noise (hpstudy.sequential_simulation).",
    )
    seq.add_argument("--studies", type=int, default=1000, help="simulated studies per scenario")
    seq.add_argument("--initial", type=int, default=3, help="seeds of round 1 (3)")
    seq.add_argument("--max", type=int, default=10, help="most seeds (10)")
    seq.add_argument("--step", type=int, default=2, help="seeds added per round (2)")
    seq.add_argument("--spending", choices=SPENDING, default="obrien_fleming")
    seq.add_argument("--sesoi", type=float, default=0.5, help="smallest effect of interest")
    seq.add_argument(
        "--futility",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop a question whose final look would hardly decide it (default: on)",
    )
    seq.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    seq.add_argument(
        "--levels", action="store_true", help="only print the looks and their nominal levels"
    )
    seq.set_defaults(run=cmd_simulate_sequential)
    an = designs.add_parser(
        "analysis",
        help="the verdict rule on issue 20's scenarios: false claims and power",
        description="Simulated studies with a known truth (no effect, unequal noise, curved "
        "responses, crossovers, failures, ...; hpstudy.analysis.scenarios) through the real "
        "analysis: per scenario the highest rate of each false claim against its bound, and "
        "the power of the correct claim at twice the sesoi (docs/report.md). Exit status 1 "
        "when a rate is above its bound.",
    )
    an.add_argument("--studies", type=int, default=500, help="studies per scenario (500)")
    an.add_argument("--seed", type=int, default=2026, help="random seed of the simulation")
    an.add_argument("--json", metavar="FILE", help="also write every rate, per row, as JSON")
    an.set_defaults(run=cmd_simulate_analysis)


SPENDING = ("obrien_fleming", "pocock", "bonferroni")  # hpstudy.sequential.SPENDING


def cmd_simulate_sequential(args: argparse.Namespace) -> int:
    from hpstudy import sequential
    from hpstudy.sequential_simulation import simulate, simulation_table

    plan = sequential.SeedPlan(
        args.initial, args.max, args.step, futility=args.futility, spending=args.spending
    )
    if args.levels:
        levels = sequential.nominal_levels(plan.looks, 0.05, plan.spending)
        print(f"looks {plan.looks}; nominal levels {[round(x, 5) for x in levels]}")
        return 0
    rows = simulate(args.studies, plan, sesoi=args.sesoi, seed=args.seed)
    print(simulation_table(rows, plan))
    return 0


def cmd_simulate_analysis(args: argparse.Namespace) -> int:
    import json
    import time

    from hpstudy.analysis import simulate
    from hpstudy.analysis.scenarios import scenarios

    start = time.monotonic()

    def progress(record: dict) -> None:
        print(
            f"[{time.monotonic() - start:5.0f} s] {record['scenario']}: "
            + ("within bounds" if record["within"] else "ABOVE A BOUND"),
            file=sys.stderr,
            flush=True,
        )

    records = simulate.suite(scenarios(), args.studies, args.seed, progress=progress)
    print(simulate.table(records))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0 if all(r["within"] for r in records) else 1


# --------------------------------------------------------------------------- gpuslots


def _add_gpuslots(sub) -> None:
    p = sub.add_parser(
        "gpuslots",
        help=COMMANDS["gpuslots"],
        description="GPU slots for profiles/local (hpstudy.gpuslots): how many training "
        "jobs run at once, which jobs hold each GPU, or run any command in a claimed slot "
        "(CUDA_VISIBLE_DEVICES set to the least-used GPU, held until the command ends).",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("count", help="print how many training jobs may run at once")
    actions.add_parser("status", help="print the jobs holding each GPU")
    run = actions.add_parser("run", help="claim a slot, then exec the command in it")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(run=cmd_gpuslots)


def cmd_gpuslots(args: argparse.Namespace) -> int:
    from hpstudy import gpuslots

    if args.action == "count":
        print(gpuslots.slot_count())
        return 0
    if args.action == "status":
        print(gpuslots.status_text())
        return 0
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("hpstudy gpuslots run: no command given", file=sys.stderr)
        return 2
    gpuslots.exec_in_slot(cmd)
    return 127  # not reached: exec replaced this process


# --------------------------------------------------------------------------- the command

SUBCOMMANDS: tuple[Callable, ...] = (
    _add_check,
    _add_status,
    _add_calibrate,
    _add_analyze,
    _add_simulate,
    _add_gpuslots,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hpstudy")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    top = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [-h] [--version] COMMAND ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deep-learning hyperparameter studies with seed-aware statistics.\n"
        "The studies run through Snakemake (`snakemake --cores all`, `--profile\n"
        "profiles/pbs`); this command checks, watches and plans them.",
        # the commands as a table of one line each (argparse's own list wraps long names)
        epilog="commands:\n"
        + "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
        + "\n\n`hpstudy COMMAND --help` lists a command's options.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = top.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS, prog=PROG
    )
    for add in SUBCOMMANDS:
        add(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hpstudy check ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
