rule prepare:
    input:
        get_raw_dataset,
    output:
        prepared=f"{R}/prepared/{{dataset}}/prepared.pt",
        manifest=f"{R}/prepared/{{dataset}}/manifest.json",
    log:
        f"{R}/logs/prepare/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/prepare/{{dataset}}.tsv"
    params:
        spec=get_dataset_spec,
        location=get_dataset_location,
    script:
        "../scripts/prepare.py"
