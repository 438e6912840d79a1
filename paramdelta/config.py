"""Load and check the workflow configuration before any job is planned.

The JSON schema (config/schema.yaml) fixes the shape and is the one place where a default
is written: `fill_defaults` is the one filler (the workflow, `python -m paramdelta.estimate`
and `python -m paramdelta.hub` complete a config through `validate`), and `defaults` hands
the schema's values to code that runs outside the workflow (a library function's default
argument, `train.Settings`). This module adds what a schema cannot say (cross references
between sections) and turns every failure into one line that names the field.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"  # config/schema.yaml, linked into the package


# The baselines by how they run: from one forward pass per text, by sampling, or with no model.
# (The logprob_scores job loads the model once and runs them all: the log-probability attacks
# from one forward pass per text, gradnorm from one backward pass.)
LOGPROB_ATTACKS = ("loss", "zlib", "lowercase", "ref", "mink", "minkpp", "dcpdd", "pac", "recall", "fsd", "gradnorm")
# Attacks that read membership labels (ReCaLL's prefix and FSD's fine-tuning texts are labelled
# non-members): the report says so, and the combination with the param-delta score leaves them out.
LABELLED_ATTACKS = ("recall", "fsd")
SAMPLING_ATTACKS = ("samia", "samia-zlib")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field."""


def _field(path) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    # oneOf failures hide the useful message in their sub-errors; the deepest one names the field.
    field = _field(error.absolute_path)
    if error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _describe(deepest)
    if error.validator == "oneOf":
        branches = error.validator_value
        if all("required" in branch for branch in branches):
            # Alternatives of keys: say which keys, whether none or several were given.
            options = " | ".join(", ".join(branch["required"]) for branch in branches)
            return f"config field '{field}': give exactly one of: {options}"
        if error.context:
            # Alternatives of values (e.g. an integer >= 1 or 'es'): the alternatives whose
            # type the value has say what is wrong; if it has none of their types, say so.
            by_branch: dict[int, list[jsonschema.ValidationError]] = {}
            for sub in error.context:
                by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
            typed = [subs for subs in by_branch.values() if not any(e.validator == "type" for e in subs)]
            if typed:
                reasons = [e.message for subs in typed for e in subs]
            else:
                reasons = [e.message for subs in by_branch.values() for e in subs if e.validator == "type"]
            return f"config field '{field}': " + "; or ".join(dict.fromkeys(reasons))
    return f"config field '{field}': {error.message}"


def load_schema(path: Path | None = None) -> dict:
    """The schema (config/schema.yaml unless `path`)."""
    # libyaml's loader when present: the pure-Python one takes about 0.1 s on this file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path or SCHEMA_PATH) as handle:
        return yaml.load(handle, Loader=loader)


def check_schema(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError for the first schema violation, naming the field."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise ConfigError(_describe(errors[0]))


def fill_defaults(config: dict, schema: dict | None = None) -> dict:
    """Return a copy of config with schema defaults filled in (nested objects included)."""
    schema = schema or load_schema()
    definitions = schema.get("definitions", {})

    def resolve(node: dict) -> dict:
        ref = node.get("$ref")
        return definitions[ref.rsplit("/", 1)[-1]] if ref else node

    def fill(value: Any, node: dict) -> Any:
        node = resolve(node)
        if isinstance(value, dict):
            for key, sub in node.get("properties", {}).items():
                sub = resolve(sub)
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    value[key] = fill(value[key], sub)
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for key in value:
                    if key not in node.get("properties", {}):
                        value[key] = fill(value[key], extra)
        return value

    return fill(copy.deepcopy(config), schema)


@functools.cache
def _schema_defaults() -> dict:
    return fill_defaults({})


def defaults(*keys: str) -> Any:
    """The schema's default of a top-level config field, e.g. `defaults("baselines", "samia",
    "n_samples")`, or of a section with all its fields' defaults (`defaults("train")`): for code
    outside the workflow that needs the value a config would give. Read once per process."""
    value = _schema_defaults()
    for key in keys:
        value = value[key]
    return copy.deepcopy(value)


def check_references(config: dict) -> None:
    """Cross-section checks that the schema cannot express."""
    datasets = config["datasets"]
    for slug, model in config["models"].items():
        build = model.get("build")
        if build:
            target = build["dataset"]
            if target not in datasets:
                raise ConfigError(
                    f"config field 'models.{slug}.build.dataset': unknown data set '{target}'; known: {sorted(datasets)}"
                )
            if "controlled" not in datasets[target]:
                raise ConfigError(
                    f"config field 'models.{slug}.build.dataset': data set '{target}' is not a controlled one; a built model needs known members"
                )
        if config["train"]["device"] == "cuda" and model["gpus"] == 0:
            raise ConfigError(
                f"config field 'models.{slug}.gpus': train.device is 'cuda' but this model's jobs ask for no GPU "
                "(set gpus: 1 or more, or train.device: auto)"
            )
        engine = model.get("engine") or config["train"]["engine"]
        if model["gpus"] > 1 and engine != "deepspeed":
            raise ConfigError(
                f"config field 'models.{slug}.gpus': {model['gpus']} GPUs need the deepspeed engine (ZeRO shards "
                f"the training state over them); this model uses '{engine}'"
            )
        if config["train"]["parallel_texts"] > 1 and engine != "torch":
            raise ConfigError(
                f"config field 'train.parallel_texts': texts side by side need the torch engine; model '{slug}' "
                f"uses '{engine}' (set parallel_texts: 1 for it, or engine: torch)"
            )
        for name in model.get("datasets", []):
            if name not in datasets:
                raise ConfigError(
                    f"config field 'models.{slug}.datasets': unknown data set '{name}'; known: {sorted(datasets)}"
                )
            if "controlled" in datasets[name] and (not build or build["dataset"] != name):
                raise ConfigError(
                    f"config field 'models.{slug}.datasets': '{name}' is a controlled data set; only a model built on it "
                    "(models.<slug>.build.dataset) knows its members"
                )
    for name, dataset in datasets.items():
        controlled = dataset.get("controlled")
        if controlled and "generator" in controlled["corpus"]:
            n_docs, n_candidates = controlled["corpus"]["n_documents"], controlled["candidates"]
            if n_candidates > n_docs:
                raise ConfigError(
                    f"config field 'datasets.{name}.controlled.candidates': {n_candidates} candidates but the corpus has only {n_docs} documents"
                )
    if config["train"]["parallel_texts"] > 1 and config["train"]["best_state"] == "replay":
        raise ConfigError(
            "config field 'train.best_state': texts side by side keep their best states on the device and cannot "
            "replay one text; use best_state: auto or keep, or parallel_texts: 1"
        )
    if config["train"]["parallel_texts"] > 1 and config["train"]["precision"] == "fp16":
        raise ConfigError(
            "config field 'train.parallel_texts': texts side by side train in fp32 or bf16, not fp16 (its loss "
            "scale is per text); use precision: bf16, or parallel_texts: 1"
        )
    snapshots = config["snapshots"]
    if snapshots["store"] == "full" and snapshots["dtype"] != "float32":
        raise ConfigError(
            "config field 'snapshots.dtype': a full after-state in bfloat16 is rounded far more than one "
            "text's training moves it, so its delta would measure rounding; use float32 (or store: delta)"
        )
    for name, setting in config["optimizers"].items():
        unknown = [budget for budget in setting.get("budgets", []) if str(budget) not in map(str, config["budgets"])]
        if unknown:
            raise ConfigError(
                f"config field 'optimizers.{name}.budgets': {unknown} not in budgets {config['budgets']}; an "
                "optimizer setting runs a subset of them"
            )
    corpus = config["baselines"]["dcpdd"].get("corpus")
    if "dcpdd" in config["attacks"] and corpus:
        from paramdelta.data import TEXT_FILE_SUFFIXES

        if not Path(corpus).is_file():
            raise ConfigError(f"config field 'baselines.dcpdd.corpus': no file {corpus!r}")
        if not corpus.endswith(TEXT_FILE_SUFFIXES):
            raise ConfigError(
                f"config field 'baselines.dcpdd.corpus': {corpus!r} is none of {', '.join(TEXT_FILE_SUFFIXES)}"
            )
    if "ref" in config["attacks"] and not config["baselines"].get("reference"):
        raise ConfigError("config field 'baselines.reference': the 'ref' attack (in attacks) needs a reference model")
    if not config["models"] and not config.get("attribution"):
        raise ConfigError(
            "config: nothing to run: name models (and the data sets they are attacked on) for membership "
            "inference, or an attribution section"
        )
    if config["models"] and not any(model_datasets(config, slug) for slug in config["models"]):
        raise ConfigError("config: no model attacks any data set (check models.<slug>.datasets)")


def model_datasets(config: dict, model: str) -> list[str]:
    """The data sets a model is attacked on."""
    spec = config["models"][model]
    if "datasets" in spec:
        return list(spec["datasets"])
    if "build" in spec:
        return [spec["build"]["dataset"]]
    return [name for name, d in config["datasets"].items() if "controlled" not in d]


def validate(config: dict, schema: dict | None = None) -> dict:
    """Schema check, defaults, cross references; returns the completed config."""
    schema = schema or load_schema()
    check_schema(config, schema)
    completed = fill_defaults(config, schema)
    check_schema(completed, schema)
    check_references(completed)
    return completed


DEFAULT_OPTIMIZER = "default"  # the name of the `train:` block's own setting
PARAM_DELTA = "param-delta"  # the method name of the parameter-change scores


def method_name(optimizer: str = DEFAULT_OPTIMIZER) -> str:
    """The method name of one training setting's scores: `param-delta` for the `train:` block's
    own, `param-delta:<name>` for an entry of `optimizers:`."""
    return PARAM_DELTA if optimizer == DEFAULT_OPTIMIZER else f"{PARAM_DELTA}:{optimizer}"


def supervised_method(classifier: str, optimizer: str = DEFAULT_OPTIMIZER) -> str:
    """The method name of a supervised classifier on one training setting's per-layer changes:
    `supervised-<classifier>`, with `:<setting>` as in method_name."""
    name = f"supervised-{classifier}"
    return name if optimizer == DEFAULT_OPTIMIZER else f"{name}:{optimizer}"


def is_supervised(method) -> bool:
    """Whether a method learns from the membership labels (out of fold): the supervised
    classifiers, and the combinations of the param-delta score with a black-box attack."""
    return str(method).startswith(("supervised-", "combined-"))


def is_param_delta(method) -> bool:
    """Whether a method is the parameter-change score, under any training setting."""
    return str(method) == PARAM_DELTA or str(method).startswith(f"{PARAM_DELTA}:")


def optimizer_settings(config: dict) -> dict[str, dict]:
    """Every training setting of a completed config: `default` (the `train:` block) first, then
    `optimizers:` in order, each the whole `train:` block with the setting's changes applied."""
    settings = {DEFAULT_OPTIMIZER: copy.deepcopy(config["train"])}
    for name, changes in config["optimizers"].items():
        settings[name] = {**copy.deepcopy(config["train"]), **{k: v for k, v in changes.items() if k != "budgets"}}
    return settings


def optimizer_budgets(config: dict, name: str) -> list[str]:
    """The budgets a training setting runs, as the workflow's budget strings."""
    chosen = (
        config["budgets"] if name == DEFAULT_OPTIMIZER else config["optimizers"][name].get("budgets", config["budgets"])
    )
    return [str(budget) for budget in config["budgets"] if str(budget) in map(str, chosen)]


def offloads_optimizer(deepspeed_config: dict) -> bool:
    """Whether a DeepSpeed config keeps the optimizer in host memory (ZeRO-Offload)."""
    offload = (deepspeed_config.get("zero_optimization") or {}).get("offload_optimizer") or {}
    return isinstance(offload, dict) and offload.get("device") == "cpu"


def deepspeed_first_step_bytes(
    deepspeed_config: dict, params: int, world_size: int, *, precision: str, moments: int
) -> float:
    """GPU bytes a DeepSpeed ZeRO-1/2 rank allocates after deepspeed.initialize, at its first
    backward and step (deepspeed 0.19): the reduction buckets (reduce_bucket_size values of the
    module's dtype, two with overlap_comm), and unless the optimizer lives in host memory
    (ZeRO-Offload) this rank's shard of the gradients in the module's dtype, of the fp32
    gradients and of the optimizer's `moments` fp32 moments."""
    zero = deepspeed_config.get("zero_optimization") or {}
    element = 2 if precision in ("bf16", "fp16") else 4
    buckets = 0.0
    if zero.get("contiguous_gradients", True):
        buckets = (2 if zero.get("overlap_comm", False) else 1) * float(zero.get("reduce_bucket_size", 5e8)) * element
    if offloads_optimizer(deepspeed_config):
        return buckets
    return buckets + (element + (1 + moments) * 4) * params / world_size


def budget_epochs(budget: str | int) -> int | None:
    """Epochs of a fixed budget; None for early stopping."""
    return None if str(budget) == "es" else int(budget)


def trajectory_budgets(config: dict, name: str, budget: str) -> list[str]:
    """The budgets of training setting `name` read from the per-epoch trajectory of its run at
    `budget` instead of runs of their own: with snapshots.trajectory and a constant schedule, the
    state after epoch b of the setting's largest fixed budget is the state a b-epoch run ends in
    (same seed, same steps, the same lr at every step). Those of the config's fixed budgets below
    that largest one that the setting does not run itself; none for any other run.

    Under a cosine schedule (the thesis's) the lr of epoch b depends on the run's length, so no
    budget can be read from another's run.
    """
    if not config["snapshots"].get("trajectory") or optimizer_settings(config)[name]["schedule"] != "constant":
        return []
    own = optimizer_budgets(config, name)
    fixed = [int(b) for b in own if budget_epochs(b) is not None]
    if budget_epochs(budget) is None or int(budget) != max(fixed, default=None):
        return []
    return [
        str(b) for b in config["budgets"] if budget_epochs(b) is not None and int(b) < int(budget) and str(b) not in own
    ]
