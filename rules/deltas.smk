# Per-layer delta table and per-text training record per (dataset, model, budget).


rule deltas:
    input:
        unpack(delta_inputs),
    output:
        table=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{budget}}.parquet",
        texts=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{budget}}.texts.parquet",
    log:
        "logs/deltas/{dataset}/{model}/{budget}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    params:
        ks=KS,
    script:
        "../workflow_scripts/deltas.py"
