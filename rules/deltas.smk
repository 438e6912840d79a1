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
    # A full or delta store is reduced by two threads computing statistics (and one reading
    # ahead); a sketch store holds them already.
    threads: 1 if config["snapshots"]["store"] == "sketch" else 2
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    params:
        ks=KS,
    script:
        "../workflow_scripts/deltas.py"
