"""Rule report. CLI: python report.py RESULTS_STUDY_DIR REPORT_DIR [BENCHMARK_DIR]"""

import sys
from pathlib import Path

from hpstudy.logs import redirect_to
from hpstudy.report import render


def main(summary, study_json, groups_dir, stats_json, out_md, out_html, fig_dir, benchmarks):
    groups = {p.stem: p for p in sorted(Path(groups_dir).glob("*.csv"))}
    render(study_json, summary, groups, out_md, out_html, fig_dir, stats_json=stats_json,
           bench_dir=benchmarks)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    with redirect_to(sm.log[0]):
        main(sm.input.summary, sm.input.study, sm.input.groups, sm.input.stats,
             sm.output.markdown, sm.output.html, sm.output.figures, sm.params.benchmarks)
else:
    res, rep = Path(sys.argv[1]), Path(sys.argv[2])
    main(res / "summary.csv", res / "study.json", res / "groups", res / "stats.json",
         rep / "report.md", rep / "report.html", rep / "figures",
         sys.argv[3] if len(sys.argv) > 3 else None)
