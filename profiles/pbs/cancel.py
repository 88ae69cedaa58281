#!/usr/bin/env python3
"""Snakemake cluster-generic cancel command: qdel PBS jobs (Ctrl-C).

Thin wrapper around hpstudy.pbs; see docs/pbs.md.
"""

import sys
from pathlib import Path

try:
    from hpstudy import pbs
except ImportError:  # python3 on PATH is not the project's environment: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from hpstudy import pbs

if __name__ == "__main__":
    sys.exit(pbs.cancel_main(sys.argv[1:]))
