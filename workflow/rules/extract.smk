rule extract:
    input:
        runs=f"{R}/{{study}}/runs/{{cfg}}",
        benchmark=f"{R}/benchmarks/train/{{study}}/{{cfg}}.tsv",
    output:
        record=f"{R}/{{study}}/records/{{cfg}}.json",
        curves=f"{R}/{{study}}/records/{{cfg}}.curves.csv",
        layers=f"{R}/{{study}}/records/{{cfg}}.layers.csv.gz",
    log:
        f"{R}/logs/extract/{{study}}/{{cfg}}.log",
    params:
        seeds=get_seeds,
    script:
        "../scripts/extract.py"
