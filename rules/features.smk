# Per-text membership scores of the parameter-change method per (dataset, model, budget).


rule scores:
    input:
        table=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{budget}}.parquet",
        texts=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{budget}}.texts.parquet",
    output:
        scores=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{budget}}.parquet",
        layers=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{budget}}.layers.parquet",
        change=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{budget}}.change.parquet",
    log:
        "logs/scores/{dataset}/{model}/{budget}.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        selections=config["features"]["selections"],
        ks=KS,
        aggregate=config["features"]["aggregate"],
    script:
        "../workflow_scripts/scores.py"
