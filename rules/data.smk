# The candidate texts of each data set, with their ids and labels, as one table.


rule dataset:
    output:
        f"{RESULTS}/data/{{dataset}}.parquet",
    log:
        "logs/dataset/{dataset}.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        spec=dataset_spec,
        digest=dataset_digest,
    script:
        "../workflow_scripts/dataset.py"


# Hub models: fetched once, on the submitting node (it has the network; compute nodes often
# do not), before any job runs them. A model fetched before with `python -m paramdelta.hub
# fetch` is not downloaded again. The output records the commit the revision resolved to;
# the jobs that run the model take it as input and load the snapshot offline.
rule fetch_model:
    output:
        f"{RESULTS}/hub/{{model}}.json",
    log:
        "logs/fetch_model/{model}.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        repo=lambda wildcards: config["models"][wildcards.model]["path"],
        revision=per_model(model_revision),
    script:
        "../workflow_scripts/fetch_model.py"
