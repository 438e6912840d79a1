# One tidy metrics table over every data set, model, budget and method.


rule metrics:
    input:
        scores=score_tables,
        texts=text_tables,
    output:
        metrics=f"{RESULTS}/metrics.csv",
        ttest=f"{RESULTS}/ttest.csv",
        correlation=f"{RESULTS}/correlation.csv",
        topk_cv=f"{RESULTS}/topk_cv.csv",
    log:
        "logs/metrics.log",
    params:
        bootstrap=config["metrics"]["bootstrap"],
        seed=config["metrics"]["seed"],
    localrule: True
    conda:
        "../envs/paramdelta.yaml"
    script:
        "../workflow_scripts/metrics.py"
