"""Rule extract. CLI: python extract.py RUN_DIR STUDY EXPERIMENT GROUP LABEL SEED OUT.json"""

import sys
from pathlib import Path

from hpstudy.atomic import write_json
from hpstudy.extract import run_record
from hpstudy.logs import redirect_to

if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        w = sm.wildcards
        record = run_record(Path(sm.input.metrics).parent, w.study, w.exp,
                            sm.params.meta["group"], sm.params.meta["label"], int(w.seed))
        write_json(sm.output.record, record)
else:
    run_dir, study, exp, group, label, seed, out = sys.argv[1:8]
    write_json(out, run_record(run_dir, study, exp, group, label, int(seed)))
