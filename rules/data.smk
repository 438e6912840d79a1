# The candidate texts of each data set, with their ids and labels, as one table.


rule dataset:
    output:
        f"{RESULTS}/data/{{dataset}}.parquet",
    log:
        "logs/dataset/{dataset}.log",
    params:
        spec=dataset_spec,
        digest=dataset_digest,
    localrule: True
    conda:
        "../envs/paramdelta.yaml"
    script:
        "../workflow_scripts/dataset.py"
