# Continual pre-training per (dataset, model, budget, shard of texts), into one snapshot store each.


rule base_snapshot:
    input:
        model_input,
    output:
        directory(f"{RESULTS}/snapshots/{{model}}/base.zarr"),
    log:
        "logs/base_snapshot/{model}.log",
    params:
        path=model_path,
        revision=model_revision,
        dtype=model_dtype,
    resources:
        **model_resources(gpus="none"),
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/base_snapshot.py"


rule train:
    input:
        model=model_input,
        # The table is read for the shard's texts, which the params already pin down:
        # regenerating it (texts added elsewhere) must not rerun this job.
        dataset=ancient(f"{RESULTS}/data/{{dataset}}.parquet"),
        deepspeed=deepspeed_input,
    output:
        directory(f"{RESULTS}/train/{{dataset}}/{{model}}/{{budget}}/{{shard}}.zarr"),
    log:
        "logs/train/{dataset}/{model}/{budget}/{shard}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{model}}/{{budget}}/{{shard}}.tsv"
    params:
        texts=shard_texts,
        model=train_model_params,
        engine=train_engine,
        train=TRAIN,
        snapshots=SNAPSHOTS,
        ks=train_ks,
    threads: model_threads
    resources:
        **model_resources(gpus="all"),
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train.py"
