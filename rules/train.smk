# Continual pre-training per (dataset, model, training setting, budget, shard of texts), into one
# snapshot store each.


rule base_snapshot:
    input:
        per_model(model_input),
    output:
        directory(f"{RESULTS}/snapshots/{{model}}/base.zarr"),
    log:
        "logs/base_snapshot/{model}.log",
    priority: 3
    conda:
        "../envs/train.yaml"
    resources:
        **model_resources(gpus="none"),
    params:
        path=per_model(model_path),
        revision=per_model(model_revision),
        dtype=per_model(model_dtype),
    script:
        "../workflow_scripts/base_snapshot.py"


rule train:
    input:
        model=per_model(model_input),
        # The table is read for the shard's texts, which the params already pin down:
        # regenerating it (texts added elsewhere) must not rerun this job.
        dataset=ancient(f"{RESULTS}/data/{{dataset}}.parquet"),
        deepspeed=per_model(deepspeed_input),
    output:
        directory(f"{RESULTS}/train/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}/{{shard}}.zarr"),
    log:
        "logs/train/{dataset}/{model}/{optimizer}/{budget}/{shard}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}/{{shard}}.tsv"
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: per_model(model_threads)
    resources:
        **model_resources(gpus="all"),
    params:
        texts=shard_texts,
        model=per_model(train_model_params),
        engine=per_model(train_engine),
        train=train_settings(),
        snapshots=SNAPSHOTS,
        ks=TRAIN_KS,
    script:
        "../workflow_scripts/train.py"
