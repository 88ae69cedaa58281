rule train:
    input:
        prepared=get_prepared,
        repair=repair_damaged,  # none: reruns the job when its published seeds are damaged
    output:
        runs=directory(f"{R}/{{study}}/runs/{{cfg}}"),
    log:
        f"{R}/logs/train/{{study}}/{{cfg}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{study}}/{{cfg}}.tsv"
    resources:
        runtime=train_runtime_minutes,  # minutes: the seeds' estimate (profiles/walltime.yaml)
    params:
        cfg=get_train_config,
        seeds=get_seeds,
        keep=get_keep_dir,
        tensorboard=get_tensorboard_dir,
    script:
        "../scripts/train.py"
