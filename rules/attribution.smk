# Attribution by unlearning (UnTrac, UnTrac-Inv) with its comparison methods and the
# leave-one-out truth: one job per (experiment, seed) and training run, unlearning run or
# gradient computation (paramdelta/attribution/jobs.py). Its helpers are in common.smk.


wildcard_constraints:
    experiment="|".join(map(re.escape, EXPERIMENTS)) or "^$",
    seed=r"\d+",
    training="|".join(map(re.escape, set_names("training"))),
    evaluation="|".join(map(re.escape, set_names("evaluation"))),
    variant="|".join(sorted({re.escape(v) for per in VARIANTS.values() for v in per})) or "^$",


rule attribution_sets:
    output:
        sets=f"{SEED_DIR}/sets.json",
        tokenizer=directory(f"{SEED_DIR}/tokenizer"),
    log:
        "logs/attribution/{experiment}/seed{seed}/sets.log",
    # The chain's first jobs start early, as the targets' do (rules/target.smk).
    priority: 3
    conda:
        "../envs/train.yaml"
    params:
        experiment=experiment_spec,
    script:
        "../workflow_scripts/attribution.py"


rule attribution_model:
    input:
        sets=f"{SEED_DIR}/sets.json",
        tokenizer=f"{SEED_DIR}/tokenizer",
    output:
        model=directory(f"{SEED_DIR}/model"),
        checkpoints=f"{SEED_DIR}/checkpoints.pt",
        losses=f"{SEED_DIR}/losses/full.json",
    log:
        "logs/attribution/{experiment}/seed{seed}/model.log",
    benchmark:
        f"{RESULTS}/benchmarks/attribution/{{experiment}}/seed{{seed}}/model.tsv"
    # The chain's first jobs start early, as the targets' do (rules/target.smk).
    priority: 3
    conda:
        "../envs/train.yaml"
    threads: config["threads"]
    resources:
        **attribution_resources(),
    params:
        experiment=experiment_spec,
    script:
        "../workflow_scripts/attribution.py"


rule attribution_leave_out:
    input:
        sets=f"{SEED_DIR}/sets.json",
        tokenizer=f"{SEED_DIR}/tokenizer",
    output:
        losses=f"{SEED_DIR}/losses/without-{{training}}.json",
    log:
        "logs/attribution/{experiment}/seed{seed}/without-{training}.log",
    benchmark:
        f"{RESULTS}/benchmarks/attribution/{{experiment}}/seed{{seed}}/without-{{training}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["threads"]
    resources:
        **attribution_resources(),
    params:
        experiment=experiment_spec,
    script:
        "../workflow_scripts/attribution.py"


rule attribution_untrac:
    input:
        sets=f"{SEED_DIR}/sets.json",
        model=f"{SEED_DIR}/model",
    output:
        f"{SEED_DIR}/untrac/{{variant}}/{{training}}.csv",
    log:
        "logs/attribution/{experiment}/seed{seed}/untrac/{variant}/{training}.log",
    benchmark:
        f"{RESULTS}/benchmarks/attribution/{{experiment}}/seed{{seed}}/untrac/{{variant}}/{{training}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["threads"]
    resources:
        **attribution_resources(),
    params:
        experiment=experiment_spec,
        section=canonical(ATTRIBUTION.get("untrac")),
        variant=variant_spec,
    script:
        "../workflow_scripts/attribution.py"


rule attribution_untrac_inv:
    input:
        sets=f"{SEED_DIR}/sets.json",
        model=f"{SEED_DIR}/model",
    output:
        f"{SEED_DIR}/untrac-inv/{{variant}}/{{evaluation}}.csv",
    log:
        "logs/attribution/{experiment}/seed{seed}/untrac-inv/{variant}/{evaluation}.log",
    benchmark:
        f"{RESULTS}/benchmarks/attribution/{{experiment}}/seed{{seed}}/untrac-inv/{{variant}}/{{evaluation}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["threads"]
    resources:
        **attribution_resources(),
    params:
        experiment=experiment_spec,
        section=canonical(ATTRIBUTION.get("untrac_inv")),
        variant=variant_spec,
    script:
        "../workflow_scripts/attribution.py"


rule attribution_gradients:
    input:
        sets=f"{SEED_DIR}/sets.json",
        model=f"{SEED_DIR}/model",
        checkpoints=f"{SEED_DIR}/checkpoints.pt",
    output:
        f"{SEED_DIR}/gradient-methods.csv",
    log:
        "logs/attribution/{experiment}/seed{seed}/gradient-methods.log",
    benchmark:
        f"{RESULTS}/benchmarks/attribution/{{experiment}}/seed{{seed}}/gradient-methods.tsv"
    # The longest job of an experiment, before its many short unlearning jobs.
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: config["threads"]
    resources:
        **attribution_resources(),
    params:
        experiment=experiment_spec,
        methods=[m for m in ATTRIBUTION["methods"] if m in GRADIENT_METHODS],
        lissa=canonical(ATTRIBUTION.get("lissa")),
        arnoldi=canonical(ATTRIBUTION.get("arnoldi")),
    script:
        "../workflow_scripts/attribution.py"


rule attribution_summary:
    input:
        attribution_inputs(),
    output:
        influence=f"{RESULTS}/attribution/influence.csv",
        correlation=f"{RESULTS}/attribution/correlation.csv",
    log:
        "logs/attribution/summary.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        attribution=canonical(ATTRIBUTION),
        root=lambda wildcards, output: os.path.dirname(output.influence),
    script:
        "../workflow_scripts/attribution.py"


rule attribution_report:
    input:
        influence=f"{RESULTS}/attribution/influence.csv",
        correlation=f"{RESULTS}/attribution/correlation.csv",
    output:
        html=report(f"{RESULTS}/report/attribution.html", category="Report"),
    log:
        "logs/attribution/report.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        title="Attribution by unlearning (UnTrac, UnTrac-Inv)",
        experiments=experiment_pages(),
    script:
        "../workflow_scripts/attribution_report.py"
