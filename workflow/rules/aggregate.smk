rule experiments:
    output:
        table=f"{R}/{{study}}/experiments.tsv",
    log:
        f"{R}/logs/experiments/{{study}}.log",
    params:
        study_file=lambda wildcards: str(get_study(wildcards.study).path),
        design=lambda wildcards: config_hash(
            get_study(wildcards.study).table().to_dict(orient="list")
        ),
    script:
        "../scripts/experiments.py"


rule aggregate:
    input:
        records=get_run_records,
        prepared=get_prepared,
    output:
        summary=f"{R}/{{study}}/summary.csv",
        study=f"{R}/{{study}}/study.json",
        groups=directory(f"{R}/{{study}}/groups"),
        stats=f"{R}/{{study}}/stats.json",
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
        study_file=lambda wildcards: str(get_study(wildcards.study).path),
        all_runs=get_all_runs,
        allow_partial=config["allow_partial"],
    script:
        "../scripts/aggregate.py"
