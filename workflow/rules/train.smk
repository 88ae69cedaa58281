rule train:
    input:
        prepared=get_prepared,
    output:
        metrics=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/metrics.json",
        history=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/history.csv",
        layers=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/layers.csv.gz",
        config=f"{R}/{{study}}/runs/{{exp}}/seed{{seed}}/config.yaml",
    log:
        f"{R}/logs/train/{{study}}/{{exp}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{study}}/{{exp}}/seed{{seed}}.tsv"
    params:
        cfg=get_train_config,
        checkpoint=get_checkpoint,
        tensorboard=get_tensorboard_dir,
    script:
        "../scripts/train.py"
