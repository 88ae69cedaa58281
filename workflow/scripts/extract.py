"""Rule extract. CLI: python extract.py RUNS_DIR CONFIG_ID SEEDS BENCHMARK OUT_PREFIX
(SEEDS comma-separated; writes OUT_PREFIX.json, .curves.csv and .layers.csv.gz)"""

import sys

from hpstudy.extract import write_extract
from hpstudy.integrity import exit_on_damage
from hpstudy.logs import redirect_to

if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]), exit_on_damage():
        write_extract(
            sm.input.runs,
            sm.wildcards.cfg,
            list(sm.params.seeds),
            sm.input.benchmark,
            sm.output.record,
            sm.output.curves,
            sm.output.layers,
        )
else:
    runs, cfg, seeds, bench, out = sys.argv[1:6]
    write_extract(
        runs,
        cfg,
        [int(s) for s in seeds.split(",")],
        bench,
        f"{out}.json",
        f"{out}.curves.csv",
        f"{out}.layers.csv.gz",
    )
