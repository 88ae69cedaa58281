"""Rule report: reads only the aggregate outputs (and experiments.tsv).
CLI: python report.py RESULTS_STUDY_DIR REPORT_DIR"""

import sys
from pathlib import Path

from hpstudy.integrity import exit_on_damage
from hpstudy.logs import redirect_to
from hpstudy.report import render


def main(res, out_md, out_html, fig_dir, **inputs):
    res = Path(res)
    paths = {
        name: res / file
        for name, file in (
            ("summary", "summary.csv"),
            ("study", "study.json"),
            ("groups", "groups"),
            ("stats", "stats.json"),
            ("curves", "curves.csv.gz"),
            ("layers", "layers.csv.gz"),
            ("experiments", "experiments.tsv"),
            ("verdicts", "verdicts.csv"),
            ("recommended", "recommended.yaml"),
            ("timeline", "timeline.csv"),
            ("compute", "compute.csv"),
        )
    }
    paths.update({k: Path(v) for k, v in inputs.items()})
    groups = {p.stem: p for p in sorted(paths["groups"].glob("*.csv"))}
    render(
        paths["study"],
        paths["summary"],
        groups,
        out_md,
        out_html,
        fig_dir,
        stats_json=paths["stats"],
        curves=paths["curves"],
        layers=paths["layers"],
        experiments=paths["experiments"],
        verdicts_csv=paths["verdicts"],
        recommended_yaml=paths["recommended"],
        timeline_csv=paths["timeline"],
        compute_csv=paths["compute"],
    )


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]), exit_on_damage():
        i = sm.input
        main(
            Path(i.summary).parent,
            sm.output.markdown,
            sm.output.html,
            sm.output.figures,
            summary=i.summary,
            study=i.study,
            groups=i.groups,
            stats=i.stats,
            curves=i.curves,
            layers=i.layers,
            experiments=i.experiments,
            verdicts=i.verdicts,
            recommended=i.recommended,
            timeline=i.timeline,
            compute=i.compute,
        )
else:
    res, rep = Path(sys.argv[1]), Path(sys.argv[2])
    main(res, rep / "report.md", rep / "report.html", rep / "figures")
