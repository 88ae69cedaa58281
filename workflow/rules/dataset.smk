rule generate_microbeads:
    output:
        directory(f"{R}/datasets/microbeads-synthetic-{{tag}}"),
    log:
        f"{R}/logs/generate_microbeads/{{tag}}.log",
    benchmark:
        f"{R}/benchmarks/generate_microbeads/{{tag}}.tsv"
    params:
        n_images=config["synthetic"]["n_images"],
        image_size=config["synthetic"]["image_size"],
        seed=config["synthetic"]["seed"],
    script:
        "../scripts/generate_microbeads.py"
