rule extract:
    input:
        metrics=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/metrics.json",
        config=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/config.yaml",
    output:
        record=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/record.json",
    log:
        f"{R}/logs/extract/{{study}}/{{exp}}/seed{{seed}}.log",
    params:
        meta=get_run_record_meta,
    script:
        "../scripts/extract.py"
