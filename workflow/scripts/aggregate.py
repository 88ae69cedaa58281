"""Rule aggregate. CLI: python aggregate.py STUDY_YAML MANIFEST OUT_DIR RECORD.json...
(each RECORD.json beside its .curves.csv and .layers.csv.gz, as rule extract writes them)"""

import sys

from hpstudy.aggregate import aggregate_study
from hpstudy.integrity import exit_on_damage
from hpstudy.logs import redirect_to

if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]), exit_on_damage():
        aggregate_study(
            sm.input.study,
            sm.input.manifest,
            list(sm.input.records),
            sm.output.summary,
            sm.output.study,
            sm.output.groups,
            sm.params.all_runs,
            sm.params.allow_partial,
            sm.output.stats,
            list(sm.input.curves),
            list(sm.input.layers),
            sm.output.curves,
            sm.output.layers,
            sm.output.verdicts,
            sm.output.recommended,
            sm.input.rounds[0] if sm.input.rounds else None,
            sm.output.timeline,
            sm.output.compute,
            sm.params.seeds,
        )
else:
    from pathlib import Path

    study_file, manifest, out_dir, *records = sys.argv[1:]
    out = Path(out_dir)
    stems = [r.removesuffix(".json") for r in records]
    aggregate_study(
        study_file,
        manifest,
        records,
        out / "summary.csv",
        out / "study.json",
        out / "groups",
        None,
        True,
        out / "stats.json",
        [f"{s}.curves.csv" for s in stems],
        [f"{s}.layers.csv.gz" for s in stems],
        out / "curves.csv.gz",
        out / "layers.csv.gz",
        out / "verdicts.csv",
        out / "recommended.yaml",
        None,
        out / "timeline.csv",
        out / "compute.csv",
    )
