rule report:
    input:
        summary=f"{R}/{{study}}/summary.csv",
        study=f"{R}/{{study}}/study.json",
        groups=f"{R}/{{study}}/groups",
        stats=f"{R}/{{study}}/stats.json",
        verdicts=f"{R}/{{study}}/verdicts.csv",
        recommended=f"{R}/{{study}}/recommended.yaml",
    output:
        markdown=report(
            f"{REPORTS}/{{study}}/report.md",
            caption="../report/report_md.rst",
            category="Study report",
        ),
        html=f"{REPORTS}/{{study}}/report.html",
        figures=report(
            directory(f"{REPORTS}/{{study}}/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        f"{R}/logs/report/{{study}}.log",
    params:
        # per-run history.csv and layers.csv.gz are found through summary.csv's run_dir;
        # the training jobs' benchmark TSVs give wall time and peak RSS per job
        benchmarks=lambda wildcards: f"{R}/benchmarks/train/{wildcards.study}",
    script:
        "../scripts/report.py"
