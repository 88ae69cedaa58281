rule experiments:
    input:
        study=get_study_file,
    output:
        table=f"{R}/{{study}}/experiments.tsv",
    log:
        f"{R}/logs/experiments/{{study}}.log",
    script:
        "../scripts/experiments.py"


rule aggregate:
    input:
        study=get_study_file,
        records=get_records,
        curves=get_records_of(".curves.csv"),
        layers=get_records_of(".layers.csv.gz"),
        manifest=get_manifest,
        rounds=get_rounds_file,
    output:
        summary=f"{R}/{{study}}/summary.csv",
        study=f"{R}/{{study}}/study.json",
        groups=directory(f"{R}/{{study}}/groups"),
        stats=f"{R}/{{study}}/stats.json",
        curves=f"{R}/{{study}}/curves.csv.gz",
        layers=f"{R}/{{study}}/layers.csv.gz",
        timeline=f"{R}/{{study}}/timeline.csv",
        compute=f"{R}/{{study}}/compute.csv",
        verdicts=report(
            f"{R}/{{study}}/verdicts.csv",
            caption="../report/verdicts.rst",
            category="Answers",
        ),
        recommended=report(
            f"{R}/{{study}}/recommended.yaml",
            caption="../report/recommended.rst",
            category="Answers",
        ),
    log:
        f"{R}/logs/aggregate/{{study}}.log",
    params:
        all_runs=get_all_runs,
        allow_partial=config["allow_partial"],
        seeds=SEEDS,
    script:
        "../scripts/aggregate.py"
