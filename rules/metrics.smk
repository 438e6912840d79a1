# One tidy metrics table over every data set, model, budget and method.


rule metrics:
    input:
        scores=score_tables,
        texts=text_tables,
        change=report_tables("change"),
    output:
        metrics=report(f"{RESULTS}/metrics.csv", caption="../report/metrics.rst", category="Tables"),
        ttest=report(f"{RESULTS}/ttest.csv", caption="../report/ttest.rst", category="Tables"),
        correlation=report(f"{RESULTS}/correlation.csv", caption="../report/correlation.rst", category="Tables"),
        topk_cv=report(f"{RESULTS}/topk_cv.csv", caption="../report/topk_cv.rst", category="Tables"),
        # per-text scores of the param-delta score combined with the best black-box attack
        combined=f"{RESULTS}/scores/combined.parquet",
    log:
        "logs/metrics.log",
    priority: 2
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        bootstrap=config["metrics"]["bootstrap"],
        seed=config["metrics"]["seed"],
        folds=config["features"]["folds"],
    script:
        "../workflow_scripts/metrics.py"
