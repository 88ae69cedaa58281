rule train_round:
    input:
        prepared=get_prepared,
        repair=repair_damaged,  # none: reruns the job when its published seeds are damaged
        # the round before decides this round's seeds (params, runtime): a job that
        # re-evaluates them on a cluster node needs the checkpoint's output as an input
        previous=get_previous_round,
    output:
        runs=directory(f"{R}/{{study}}/rounds/{{k}}/runs/{{cfg}}"),
    log:
        f"{R}/logs/train/{{study}}/round{{k}}/{{cfg}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{study}}/round{{k}}/{{cfg}}.tsv"
    resources:
        runtime=train_runtime_minutes,  # minutes: the seeds' estimate (profiles/walltime.yaml)
    params:
        cfg=get_train_config,
        seeds=get_round_seeds,
        keep=get_keep_dir,
        tensorboard=get_tensorboard_dir,
    script:
        "../scripts/train.py"


rule extract_round:
    input:
        runs=f"{R}/{{study}}/rounds/{{k}}/runs/{{cfg}}",
        benchmark=f"{R}/benchmarks/train/{{study}}/round{{k}}/{{cfg}}.tsv",
        previous=get_previous_round,
    output:
        record=f"{R}/{{study}}/rounds/{{k}}/records/{{cfg}}.json",
        curves=f"{R}/{{study}}/rounds/{{k}}/records/{{cfg}}.curves.csv",
        layers=f"{R}/{{study}}/rounds/{{k}}/records/{{cfg}}.layers.csv.gz",
    log:
        f"{R}/logs/extract/{{study}}/round{{k}}/{{cfg}}.log",
    params:
        seeds=get_round_seeds,
    script:
        "../scripts/extract.py"


checkpoint decide_round:
    input:
        study=get_study_file,
        manifest=get_manifest,
        records=get_round_records,
        previous=get_previous_round,
    output:
        decision=f"{R}/{{study}}/rounds/round{{k}}.yaml",
    log:
        f"{R}/logs/rounds/{{study}}/round{{k}}.log",
    params:
        seeds=SEEDS,
    script:
        "../scripts/decide_round.py"
