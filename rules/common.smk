# Configuration, the candidate tables and the job fan-out, known when the DAG is built.

import inspect
import os
import re

from snakemake.exceptions import WorkflowError

# The package is installed where snakemake runs (`make setup`: editable, in .venv), as in
# every environment a job runs in (envs/*.post-deploy.sh).
try:
    from paramdelta import config as config_checks
    from paramdelta import data, hub, inputs
    from paramdelta.attribution.plan import GRADIENT_METHODS, variants
except ModuleNotFoundError as error:
    if error.name != "paramdelta":
        raise  # one of the package's own dependencies: the error names it
    raise WorkflowError(
        "the paramdelta package is not installed where snakemake runs: run `make setup` and "
        "use .venv/bin/snakemake, or install it into this environment with `pip install -e .` from the "
        "workflow's directory"
    ) from None

# Where the conda environments' post-deploy scripts (envs/*.post-deploy.sh) install the package
# from: snakemake creates the environments from this process, and they inherit its environment.
os.environ.update(PARAMDELTA_SOURCE=workflow.basedir)

if not config:
    raise WorkflowError(
        "no configuration: name one with --configfile, e.g. `--configfile config/demo.yaml` (the demo, "
        "what `make demo` runs) or `--configfile config/wikimia.yaml` (the thesis's cluster experiment)"
    )

# Every input checked before any job (paramdelta/inputs.py): the config's fields and cross
# references, local model directories, hub items fetched beforehand, DeepSpeed JSON, and the
# rows of every data set a model attacks.
try:
    completed, TABLES = inputs.check(config, workflow.basedir)
    # No snakemake.utils.validate: inputs.check has run the schema on the config as given and
    # as completed, and the defaults are filled in one place, paramdelta.config.fill_defaults,
    # which `python -m paramdelta.estimate` and the hub fetch complete a config with too.
    config.update(completed)
except (config_checks.ConfigError, data.DataError) as error:
    raise WorkflowError(str(error)) from None

RESULTS = config["results"]
MODELS = list(config["models"])
BUDGETS = [str(b) for b in config["budgets"]]
# Training settings: `default` (the `train:` block) and each of `optimizers:`, with their budgets.
OPTIMIZERS = {name: config_checks.optimizer_budgets(config, name) for name in config_checks.optimizer_settings(config)}
RUNS = [(optimizer, budget) for optimizer, budgets in OPTIMIZERS.items() for budget in budgets]
KS = config["features"]["k"]
USED_DATASETS = sorted(TABLES)

SHARDS = {name: data.shards(table["text_id"].tolist(), config["texts_per_job"]) for name, table in TABLES.items()}
SAMIA_SHARDS = {
    name: data.shards(table["text_id"].tolist(), config["baselines"]["samia"]["texts_per_job"])
    for name, table in TABLES.items()
}
LOGPROB_ATTACKS = [a for a in config["attacks"] if a in config_checks.LOGPROB_ATTACKS]
SAMPLING = any(a in config_checks.SAMPLING_ATTACKS for a in config["attacks"])


wildcard_constraints:
    dataset="|".join(map(re.escape, config["datasets"])) or "^$",
    model="|".join(map(re.escape, MODELS)),
    budget="|".join(map(re.escape, BUDGETS)),
    optimizer="|".join(map(re.escape, OPTIMIZERS)),
    shard=r"[A-Za-z0-9]+",


def canonical(value):
    """A config value with its mappings' keys sorted: Snakemake compares params by their text,
    so reordering keys in a YAML file must not look like a change and rerun jobs."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


# What a training job's result depends on, per training setting; the engine and its DeepSpeed
# JSON come in per model (train_engine) and as a file input (deepspeed_input).
# best_state: auto is left out, as trajectory: false below, so that runs from before the option
# existed are not redone: it gives the same weights wherever training is reproducible.
TRAIN = {
    name: canonical(
        {
            k: v
            for k, v in settings.items()
            if k not in ("engine", "deepspeed_config") and (k, v) != ("best_state", "auto")
        }
    )
    for name, settings in config_checks.optimizer_settings(config).items()
}
# trajectory: false is left out, so that runs from before the option existed are not redone.
SNAPSHOTS = canonical({key: value for key, value in config["snapshots"].items() if key != "trajectory" or value})


def model_pairs():
    """Every (dataset, model) that is attacked."""
    return [(d, m) for m in MODELS for d in config_checks.model_datasets(config, m)]


# Data sets.


def dataset_spec(wildcards):
    return canonical(config["datasets"][wildcards.dataset])


def dataset_digest(wildcards):
    """Changes exactly when the data set's texts or labels change."""
    return data.digest(TABLES[wildcards.dataset])


# Built targets (controlled data sets).


def build_spec(wildcards):
    return canonical(config["models"][wildcards.model]["build"])


def build_background(wildcards):
    build = build_spec(wildcards)
    return [] if "base" in build else f"{RESULTS}/targets/{build['dataset']}/background.jsonl"


def build_dataset_table(wildcards):
    return f"{RESULTS}/data/{build_spec(wildcards)['dataset']}.parquet"


# Planning cost. Snakemake calls a rule's functions (input, params, threads, resources) once per
# job, and works out each function's signature again at every call. With one training job per
# text (texts_per_job: 1; 15,520 jobs for config/wikimia.yaml) those calls, not the functions'
# own work, were most of the planning time (benchmarks/bench_planning.py). So a field that depends
# on the model alone is a value where every model agrees (per_model), and the functions that are
# left carry their signature (per_job).


def per_job(function):
    """A function for a rule's input, params, threads or resources, with its signature worked
    out once: inspect.signature, which Snakemake calls several times a job, returns a
    function's __signature__ as it is."""
    function.__signature__ = inspect.signature(function)
    return function


def per_model(value_of):
    """A field of a job that depends on its model only, from `value_of(model)`. It is the value
    itself when every model has the same one (nothing to evaluate per job), else a function of
    the wildcards that looks the job's model up in a table made once."""
    values = {model: value_of(model) for model in MODELS}
    # (A config without models, attribution only, never calls the function.)
    if MODELS and all(value == values[MODELS[0]] for value in values.values()):
        return values[MODELS[0]]
    return per_job(lambda wildcards: values[wildcards.model])


# Models.


def model_path(model):
    """Where a model loads from: a hub id or local directory, or the target the workflow builds."""
    spec = config["models"][model]
    return f"{RESULTS}/models/{model}/target" if "build" in spec else spec["path"]


def is_hub_model(model):
    spec = config["models"][model]
    return "path" in spec and hub.is_hub_id(spec["path"])


def model_input(model):
    """What a job that runs the model waits for: a built target, or a hub model's fetch record;
    a local directory is not a workflow output."""
    if "build" in config["models"][model]:
        return [model_path(model)]
    return [f"{RESULTS}/hub/{model}.json"] if is_hub_model(model) else []


def model_revision(model):
    return config["models"][model].get("revision")


def model_dtype(model):
    return config["models"][model]["dtype"]


def train_model_params(model):
    """What a training job needs to know of its model; nothing that only schedules it."""
    spec = config["models"][model]
    return {"path": model_path(model), "revision": spec.get("revision"), "zero_stage": spec.get("zero_stage")}


def report_config(wildcards):
    return canonical(config)


def model_gpus(wildcards):
    return {model: spec["gpus"] for model, spec in sorted(config["models"].items())}


def train_engine(model):
    return config["models"][model].get("engine") or config["train"]["engine"]


def deepspeed_input(model):
    """The DeepSpeed JSON of a DeepSpeed job, relative to the workflow if not found where snakemake runs."""
    if train_engine(model) != "deepspeed":
        return []
    return str(inputs.deepspeed_path(config, workflow.basedir))


# Only a sketch store keeps top-K% statistics, so only then does K matter to training.
TRAIN_KS = KS if config["snapshots"]["store"] == "sketch" else []


def model_threads(model):
    """CPUs of a job that runs a model (and the torch threads it uses): the model's `cpus`."""
    return config["models"][model].get("cpus") or config["threads"]


def model_resources(*, gpus="one"):
    """Scheduler resources of a job that runs a model, from the model's entry.

    `gpus`: "all" (the training job: `gpus: N` runs N processes), "one" (other model jobs
    run one process on at most one GPU) or "none" (jobs that only read weights on the CPU).
    Memory and runtime grow with the attempt, so a retry after an out-of-memory or a
    time-out asks for more instead of failing the same way. A SLURM field that no model sets
    is left out (as an unset one is: it never reaches sbatch).
    """
    entries = config["models"]
    mem_mb = {model: entries[model]["mem_mb"] for model in MODELS}
    runtime = {model: entries[model]["runtime"] for model in MODELS}
    resources = {
        "mem_mb": per_job(lambda wildcards, attempt: mem_mb[wildcards.model] * attempt),
        "runtime": per_job(lambda wildcards, attempt: runtime[wildcards.model] * attempt),
    }
    if gpus != "none":

        def gpu(model):
            n = entries[model]["gpus"]
            return n if gpus == "all" else min(n, 1)

        # A CPU-only job keeps the profile's default partition: it must not hold a GPU node.
        resources["slurm_partition"] = per_model(lambda model: entries[model].get("partition"))
        resources["constraint"] = per_model(lambda model: entries[model].get("constraint"))
        resources["gpu"] = per_model(gpu)
        resources["gpu_model"] = per_model(lambda model: entries[model].get("gpu_model") if gpu(model) else None)
        # --gpus counts a job's GPUs over all its nodes: one node, so that every rank sees them all.
        resources["nodes"] = per_model(lambda model: 1 if gpu(model) else None)
    return {name: value for name, value in resources.items() if value is not None}


# Training jobs and their reductions.


@per_job
def shard_texts(wildcards):
    return SHARDS[wildcards.dataset][wildcards.shard]


def train_settings():
    """The train params of a job: one value when there is one training setting, else per job."""
    if len(TRAIN) == 1:
        return TRAIN[config_checks.DEFAULT_OPTIMIZER]
    return per_job(lambda wildcards: TRAIN[wildcards.optimizer])


def delta_inputs(wildcards):
    run = f"{wildcards.dataset}/{wildcards.model}/{wildcards.optimizer}/{wildcards.budget}"
    inputs = {
        "dataset": f"{RESULTS}/data/{wildcards.dataset}.parquet",
        "stores": [f"{RESULTS}/train/{run}/{shard}.zarr" for shard in SHARDS[wildcards.dataset]],
    }
    # A full store holds after-states; a delta store needs the base for <base, delta> too.
    if config["snapshots"]["store"] in ("full", "delta"):
        inputs["base"] = f"{RESULTS}/snapshots/{wildcards.model}/base.zarr"
    return inputs


# Baselines.


def logprob_inputs(wildcards):
    inputs = {"model": model_input(wildcards.model), "dataset": f"{RESULTS}/data/{wildcards.dataset}.parquet"}
    if "dcpdd" in config["attacks"] and config["baselines"]["dcpdd"].get("corpus"):
        inputs["corpus"] = config["baselines"]["dcpdd"]["corpus"]
    return inputs


@per_job
def samia_shard_texts(wildcards):
    return SAMIA_SHARDS[wildcards.dataset][wildcards.shard]


def baseline_parts(wildcards):
    base = f"{RESULTS}/baselines/{wildcards.dataset}"
    parts = {"dataset": f"{RESULTS}/data/{wildcards.dataset}.parquet"}
    if LOGPROB_ATTACKS:
        parts["logprob"] = f"{base}/{wildcards.model}/logprob.parquet"
    if SAMPLING:
        parts["samia"] = [
            f"{base}/{wildcards.model}/samia/{shard}.parquet" for shard in SAMIA_SHARDS[wildcards.dataset]
        ]
    if "blind" in config["attacks"]:
        parts["blind"] = f"{base}/blind.parquet"
    return parts


def score_tables(wildcards=None):
    ours = [f"{RESULTS}/scores/{d}/{m}/{o}/{b}.parquet" for d, m in model_pairs() for o, b in RUNS]
    baselines = [f"{RESULTS}/scores/{d}/{m}/baselines.parquet" for d, m in model_pairs()] if config["attacks"] else []
    return ours + baselines


def report_tables(kind):
    """The per-(dataset, model, optimizer, budget) side tables of the scores rule: layers, change or curve."""
    return [f"{RESULTS}/scores/{d}/{m}/{o}/{b}.{kind}.parquet" for d, m in model_pairs() for o, b in RUNS]


def text_tables(wildcards=None):
    return [f"{RESULTS}/deltas/{d}/{m}/{o}/{b}.texts.parquet" for d, m in model_pairs() for o, b in RUNS]


def final_outputs():
    """The membership part's outputs (none when the config names no model)."""
    if not MODELS:
        return []
    base_snapshots = [f"{RESULTS}/snapshots/{m}/base.zarr" for m in MODELS]
    return [f"{RESULTS}/metrics.csv", f"{RESULTS}/report/index.html", *base_snapshots]


# Attribution by unlearning (rules/attribution.smk).
ATTRIBUTION = config.get("attribution") or {"experiments": {}, "seeds": [], "methods": []}
EXPERIMENTS = ATTRIBUTION["experiments"]
VARIANTS = {name: variants(ATTRIBUTION, experiment) for name, experiment in EXPERIMENTS.items()}
SEED_DIR = f"{RESULTS}/attribution/{{experiment}}/seed{{seed}}"


def set_names(role):
    return sorted({name for experiment in EXPERIMENTS.values() for name in experiment[role]}) or ["^$"]


def experiment_spec(wildcards):
    """What a job computes from: its experiment less the title and the scheduler resources
    (params are a rerun trigger; neither changes a result)."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return canonical({k: v for k, v in experiment.items() if k not in ("title", "resources")})


def per_experiment(value_of):
    """A field of a job that depends on its experiment only (per_model's counterpart)."""
    values = {name: value_of(EXPERIMENTS[name]["resources"]) for name in EXPERIMENTS}
    if len(set(values.values())) <= 1:
        return next(iter(values.values()), None)
    return per_job(lambda wildcards: values[wildcards.experiment])


def attribution_resources():
    """Scheduler resources of a job that runs an experiment's model, from its `resources`;
    memory and runtime grow with the attempt, as model_resources' do."""
    resources = {
        "mem_mb": per_job(
            lambda wildcards, attempt: EXPERIMENTS[wildcards.experiment]["resources"]["mem_mb"] * attempt
        ),
        "runtime": per_job(
            lambda wildcards, attempt: EXPERIMENTS[wildcards.experiment]["resources"]["runtime"] * attempt
        ),
        "slurm_partition": per_experiment(lambda spec: spec.get("partition")),
        "constraint": per_experiment(lambda spec: spec.get("constraint")),
        "gpu": per_experiment(lambda spec: spec["gpus"] or None),
        "gpu_model": per_experiment(lambda spec: spec.get("gpu_model") if spec["gpus"] else None),
    }
    return {name: value for name, value in resources.items() if value is not None}


def variant_spec(wildcards):
    return VARIANTS[wildcards.experiment][wildcards.variant]


def attribution_inputs():
    """Every job file the tables are made of."""
    methods = ATTRIBUTION["methods"]
    files = []
    for name, experiment in EXPERIMENTS.items():
        for seed in ATTRIBUTION["seeds"]:
            here = SEED_DIR.format(experiment=name, seed=seed)
            files.append(f"{here}/losses/full.json")
            files += [f"{here}/losses/without-{z}.json" for z in experiment["training"]]
            for variant in VARIANTS[name]:
                if "untrac" in methods:
                    files += [f"{here}/untrac/{variant}/{z}.csv" for z in experiment["training"]]
                if "untrac-inv" in methods:
                    files += [f"{here}/untrac-inv/{variant}/{e}.csv" for e in experiment["evaluation"]]
            if any(m in GRADIENT_METHODS for m in methods):
                files.append(f"{here}/gradient-methods.csv")
    return files


def attribution_outputs():
    if not EXPERIMENTS:
        return []
    return [
        f"{RESULTS}/attribution/influence.csv",
        f"{RESULTS}/attribution/correlation.csv",
        f"{RESULTS}/report/attribution.html",
    ]


def experiment_pages():
    """What the report says of each experiment: its title and its training sets' sizes."""
    return {
        name: {
            "title": experiment.get("title", name),
            "sizes": {z: spec.get("n", spec.get("limit")) for z, spec in experiment["training"].items()},
        }
        for name, experiment in EXPERIMENTS.items()
    }
