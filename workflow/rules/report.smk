rule report:
    input:
        summary=f"{R}/{{study}}/summary.csv",
        study=f"{R}/{{study}}/study.json",
        groups=f"{R}/{{study}}/groups",
        stats=f"{R}/{{study}}/stats.json",
        curves=f"{R}/{{study}}/curves.csv.gz",
        layers=f"{R}/{{study}}/layers.csv.gz",
        experiments=f"{R}/{{study}}/experiments.tsv",
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
    script:
        "../scripts/report.py"
