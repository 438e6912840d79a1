# Targets with known members (controlled data sets): corpus split, base model, target.


rule controlled_corpus:
    output:
        background=f"{RESULTS}/targets/{{dataset}}/background.jsonl",
    log:
        "logs/controlled_corpus/{dataset}.log",
    # On few cores the highest-priority ready job starts first: the chain to each target, then the
    # long per-model baselines, then training, with the attribution experiments and the many
    # short reductions filling the gaps, so that a run does not end on one long job alone.
    priority: 3
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        spec=dataset_spec,
    script:
        "../workflow_scripts/controlled_corpus.py"


rule base_model:
    input:
        background=build_background,
    output:
        directory(f"{RESULTS}/models/{{model}}/base"),
    log:
        "logs/base_model/{model}.log",
    benchmark:
        f"{RESULTS}/benchmarks/base_model/{{model}}.tsv"
    priority: 3
    conda:
        "../envs/train.yaml"
    threads: per_model(model_threads)
    resources:
        **model_resources(gpus="one"),
    params:
        build=build_spec,
    script:
        "../workflow_scripts/base_model.py"


rule target_model:
    input:
        base=f"{RESULTS}/models/{{model}}/base",
        dataset=build_dataset_table,
    output:
        directory(f"{RESULTS}/models/{{model}}/target"),
    log:
        "logs/target_model/{model}.log",
    benchmark:
        f"{RESULTS}/benchmarks/target_model/{{model}}.tsv"
    priority: 3
    conda:
        "../envs/train.yaml"
    threads: per_model(model_threads)
    resources:
        **model_resources(gpus="one"),
    params:
        build=build_spec,
    script:
        "../workflow_scripts/target_model.py"
