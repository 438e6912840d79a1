# The HTML report that lab members read, and its figures as Snakemake report items
# (`snakemake --report report.zip` adds code, environments and runtimes).


rule report:
    input:
        metrics=f"{RESULTS}/metrics.csv",
        ttest=f"{RESULTS}/ttest.csv",
        correlation=f"{RESULTS}/correlation.csv",
        topk_cv=f"{RESULTS}/topk_cv.csv",
        scores=score_tables,
        texts=text_tables,
        layers=report_tables("layers"),
        change=report_tables("change"),
        curve=report_tables("curve"),
    output:
        html=report(
            f"{RESULTS}/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        figures=report(
            directory(f"{RESULTS}/report/figures"),
            patterns=["{name}.html"],
            caption="../report/figure.rst",
            category="Figures",
        ),
    log:
        "logs/report.log",
    priority: 2
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        config=report_config,
        benchmarks=f"{RESULTS}/benchmarks",
        gpus=model_gpus,
        # the attribution page beside it (rules/attribution.smk), linked from the header
        attribution="attribution.html" if EXPERIMENTS else None,
    script:
        "../workflow_scripts/report.py"
