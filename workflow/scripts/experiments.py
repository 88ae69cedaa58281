"""Rule experiments: experiments.tsv maps every experiment id to its config id (the folder
under runs/), the experiments sharing its runs, and its resolved settings.
CLI: python experiments.py STUDY_YAML OUT.tsv"""

import sys

from hpstudy.atomic import write_csv
from hpstudy.logs import redirect_to
from hpstudy.study import load_study

if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        write_csv(sm.output.table, load_study(sm.input.study).table())
else:
    write_csv(sys.argv[2], load_study(sys.argv[1]).table())
