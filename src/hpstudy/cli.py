"""The `hpstudy` command: every way in for a user, as subcommands of one parser.

    hpstudy check STUDY.yaml [...]     validate study files and print what they cost

Each subcommand parses its arguments here and calls library functions; no other module
of the package parses a command line. `python -m hpstudy` runs the same command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

PROG = "hpstudy"


def _shipped() -> str:
    from hpstudy.studyfile import shipped_studies

    return ", ".join(shipped_studies()) or "none"


# --------------------------------------------------------------------------- check


def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="validate study files and print what they cost (before you run them)",
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
        help="images of your microbead folder (default: the generated 1948)",
    )
    p.add_argument("--no-cost", action="store_true", help="only check the files")
    p.set_defaults(run=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from hpstudy.study import describe, load_study
    from hpstudy.studyfile import StudyError

    studies = []
    for name in args.studies:
        try:
            study = load_study(name)
        except StudyError as err:
            print(f"hpstudy: invalid study: {err}", file=sys.stderr)
            return 2
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


# --------------------------------------------------------------------------- the command

SUBCOMMANDS: tuple[Callable, ...] = (_add_check,)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="hpstudy: deep-learning hyperparameter studies with seed-aware "
        "statistics. The studies themselves run through Snakemake (`snakemake --cores all`, "
        "`--profile profiles/pbs`); this command checks, watches and plans them.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
