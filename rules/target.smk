# Targets with known members (controlled data sets): corpus split, base model, target.


rule controlled_corpus:
    output:
        background=f"{RESULTS}/targets/{{dataset}}/background.jsonl",
    log:
        "logs/controlled_corpus/{dataset}.log",
    # On few cores the highest-priority ready job starts first: the chain to each target (3), then
    # the long per-model baselines and the reductions of finished training (2), then training (1),
    # with the attribution experiments (0) filling the gaps; so the metrics and the report, one
    # job each at the end, run while attribution jobs use the other cores.
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
