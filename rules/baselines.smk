# Black-box baselines on the same texts: log-probability attacks (one forward pass per text),
# SaMIA (sampling; sharded, it is the slow one), and the blind bag-of-words classifier.


rule logprob_scores:
    input:
        unpack(logprob_inputs),
    output:
        f"{RESULTS}/baselines/{{dataset}}/{{model}}/logprob.parquet",
    log:
        "logs/logprob_scores/{dataset}/{model}.log",
    benchmark:
        f"{RESULTS}/benchmarks/logprob_scores/{{dataset}}/{{model}}.tsv"
    priority: 2
    conda:
        "../envs/train.yaml"
    threads: per_model(model_threads)
    resources:
        **model_resources(gpus="one"),
    params:
        model=per_model(train_model_params),
        attacks=LOGPROB_ATTACKS,
        ks=config["baselines"]["k"],
        batch_size=config["baselines"]["batch_size"],
        reference=config["baselines"].get("reference"),
        dcpdd=canonical(config["baselines"]["dcpdd"]),
        pac=canonical(config["baselines"]["pac"]),
        recall=canonical(config["baselines"]["recall"]),
        fsd=canonical(config["baselines"]["fsd"]),
        # A text longer than this (default: the model's context) is scored over training's chunks.
        max_length=config["train"].get("max_length"),
        device=config["train"]["device"],
    script:
        "../workflow_scripts/logprob_scores.py"


rule samia:
    input:
        model=per_model(model_input),
        # The shard's texts are pinned by the params; see rule train.
        dataset=ancient(f"{RESULTS}/data/{{dataset}}.parquet"),
    output:
        f"{RESULTS}/baselines/{{dataset}}/{{model}}/samia/{{shard}}.parquet",
    log:
        "logs/samia/{dataset}/{model}/{shard}.log",
    benchmark:
        f"{RESULTS}/benchmarks/samia/{{dataset}}/{{model}}/{{shard}}.tsv"
    priority: 2
    conda:
        "../envs/train.yaml"
    threads: per_model(model_threads)
    resources:
        **model_resources(gpus="one"),
    params:
        model=per_model(train_model_params),
        texts=samia_shard_texts,
        samia=canonical(config["baselines"]["samia"]),
        # A text longer than this (default: the model's context) is read up to its first window.
        max_length=config["train"].get("max_length"),
        device=config["train"]["device"],
    script:
        "../workflow_scripts/samia.py"


rule blind:
    input:
        f"{RESULTS}/data/{{dataset}}.parquet",
    output:
        f"{RESULTS}/baselines/{{dataset}}/blind.parquet",
    log:
        "logs/blind/{dataset}.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        blind=canonical(config["baselines"]["blind"]),
    script:
        "../workflow_scripts/blind.py"


rule baseline_scores:
    input:
        unpack(baseline_parts),
    output:
        f"{RESULTS}/scores/{{dataset}}/{{model}}/baselines.parquet",
    log:
        "logs/baseline_scores/{dataset}/{model}.log",
    priority: 2
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        attacks=config["attacks"],
    script:
        "../workflow_scripts/baseline_scores.py"
