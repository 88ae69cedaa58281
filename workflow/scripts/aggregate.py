"""Rule aggregate. CLI: python aggregate.py STUDY_YAML PREPARED OUT_DIR RECORD.json..."""

import sys

from hpstudy.aggregate import aggregate_study
from hpstudy.logs import redirect_to

if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        aggregate_study(sm.params.study_file, sm.input.prepared, list(sm.input.records),
                        sm.output.summary, sm.output.study, sm.output.groups,
                        sm.params.all_runs, sm.params.allow_partial, sm.output.stats,
                        sm.output.verdicts, sm.output.recommended)
else:
    from pathlib import Path

    study_file, prepared, out_dir, *records = sys.argv[1:]
    out = Path(out_dir)
    aggregate_study(study_file, prepared, records, out / "summary.csv", out / "study.json",
                    out / "groups", None, True, out / "stats.json", out / "verdicts.csv",
                    out / "recommended.yaml")
