# Per-text membership scores of the parameter-change method per (dataset, model, training setting, budget).


rule scores:
    input:
        table=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.parquet",
        texts=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.texts.parquet",
        trajectory=f"{RESULTS}/deltas/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.trajectory.parquet",
    output:
        scores=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.parquet",
        layers=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.layers.parquet",
        change=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.change.parquet",
        curve=f"{RESULTS}/scores/{{dataset}}/{{model}}/{{optimizer}}/{{budget}}.curve.parquet",
    log:
        "logs/scores/{dataset}/{model}/{optimizer}/{budget}.log",
    priority: 2
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        selections=config["features"]["selections"],
        ks=KS,
        aggregate=config["features"]["aggregate"],
        distances=config["features"]["distances"],
        trajectory=config["features"]["trajectory"],
        # Smaller budgets of a constant-schedule setting, read from this run's trajectory.
        epoch_budgets=per_job(
            lambda wildcards: config_checks.trajectory_budgets(config, wildcards.optimizer, wildcards.budget)
        ),
        supervised=config["features"]["supervised"],
        folds=config["features"]["folds"],
        seed=config["metrics"]["seed"],
    script:
        "../workflow_scripts/scores.py"
