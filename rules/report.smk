# The HTML report that lab members read.


rule report:
    input:
        metrics=f"{RESULTS}/metrics.csv",
        ttest=f"{RESULTS}/ttest.csv",
        correlation=f"{RESULTS}/correlation.csv",
        scores=score_tables,
        texts=text_tables,
    output:
        f"{RESULTS}/report/index.html",
    log:
        "logs/report.log",
    params:
        config=report_config,
    localrule: True
    conda:
        "../envs/paramdelta.yaml"
    script:
        "../workflow_scripts/report.py"
