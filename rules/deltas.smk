# Per-layer delta table and per-text training record per (dataset, model, training setting, budget).


rule deltas:
    input:
        unpack(delta_inputs),
    output:
        table=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.parquet",
        texts=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.texts.parquet",
        trajectory=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.trajectory.parquet",
    log:
        "logs/deltas/{dataset}/{model}/{optimizer}/{budget}.log",
    priority: 2
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    params:
        ks=KS,
    script:
        "../workflow_scripts/deltas.py"
