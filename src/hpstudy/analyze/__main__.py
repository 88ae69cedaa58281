"""`python -m hpstudy.analyze STUDY.yaml RUNS.csv --out DIR`: the `hpstudy analyze` command;
`python -m hpstudy.analyze --simulate [--studies N]`: `hpstudy simulate analysis`."""

import sys

from hpstudy.cli import main

args = sys.argv[1:]
if args[:1] == ["--simulate"]:
    raise SystemExit(main(["simulate", "analysis", *args[1:]]))
raise SystemExit(main(["analyze", *args]))
