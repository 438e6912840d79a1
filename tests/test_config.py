"""Tests of the configuration checks: the demo config, defaults, field-naming errors, cross references."""

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paramdelta import config

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.yaml"
WIKIMIA = ROOT / "config" / "wikimia.yaml"


def read(path: Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def demo() -> dict:
    return read(DEMO)


def minimal() -> dict:
    """A hub model attacking two local data sets and one built model on a controlled data set."""
    return {
        "datasets": {
            "wikimia": {"path": "data/wikimia.jsonl", "text": "input"},
            "other": {"hf": "someone/other", "split": "test"},
            "demo": {"controlled": {"corpus": {"generator": "templates", "n_documents": 40}, "candidates": 10}},
        },
        "models": {
            "pythia": {"path": "EleutherAI/pythia-70m"},
            "tiny": {"build": {"dataset": "demo", "arch": "gpt-neox"}},
        },
    }


def error_of(cfg: dict) -> str:
    with pytest.raises(config.ConfigError) as info:
        config.validate(cfg)
    return str(info.value)


# The shipped configs.


def test_demo_config_validates_and_fills_defaults(demo):
    completed = config.validate(demo)
    train = completed["train"]
    assert train["lr"] == 3e-5
    assert train["betas"] == [0.9, 0.95]
    assert train["engine"] == "torch" and train["optimizer"] == "adamw"
    assert train["patience"] == 5 and train["max_epochs"] == 30  # given values are kept
    assert train["grad_clip"] == 1.0 and train["weight_decay"] == 0.1 and train["eps"] == 1e-5
    assert completed["features"]["k"] == [1, 2, 5, 10, 20, 50]
    assert completed["features"]["aggregate"] == "mean"
    assert "topk-layers" in completed["features"]["selections"]
    assert completed["snapshots"] == {"store": "sketch", "dtype": "float32", "trajectory": True}
    assert completed["metrics"] == {"bootstrap": 1000, "seed": 0}
    assert completed["budgets"] == [5, 10, 20, 30, "es"]
    assert completed["texts_per_job"] == 400
    assert completed["threads"] == 1 and completed["results"] == "results"
    for slug in ("pythia-tiny", "llama-tiny"):
        model = completed["models"][slug]
        assert model["dtype"] == "float32"
        assert model["gpus"] == 0 and model["mem_mb"] == 4000 and model["runtime"] == 60
        assert model["build"]["hidden_size"] == 64  # given
        assert model["build"]["batch_size"] == 4 and model["build"]["max_positions"] == 256  # default
    controlled = completed["datasets"]["demo"]["controlled"]
    assert controlled["corpus"]["n_documents"] == 1200 and controlled["candidates"] == 200


def test_validate_does_not_change_its_argument(demo):
    before = copy.deepcopy(demo)
    config.validate(demo)
    assert demo == before


def test_defaults_of_an_empty_section():
    completed = config.validate(minimal())
    assert completed["snapshots"]["store"] == "sketch"
    assert completed["train"]["lr"] == 3e-5
    assert completed["budgets"] == [5, 10, 20, 30, "es"]
    assert completed["texts_per_job"] == 1
    assert completed["datasets"]["wikimia"]["text"] == "input"  # given
    assert completed["datasets"]["wikimia"]["label"] == "label"  # default
    assert completed["datasets"]["other"]["text"] == "text"
    assert completed["models"]["pythia"]["dtype"] == "float32"
    assert completed["datasets"]["demo"]["controlled"]["members"] == 0.5


def test_demo_model_datasets(demo):
    completed = config.validate(demo)
    assert config.model_datasets(completed, "pythia-tiny") == ["demo"]
    assert config.model_datasets(completed, "llama-tiny") == ["demo"]


def test_wikimia_config_validates():
    completed = config.validate(read(WIKIMIA))
    # It stands alone: the thesis's settings are its own, not the demo's.
    assert completed["train"]["min_delta"] == 1.0e-4 and completed["train"]["patience"] == 20
    assert set(completed["models"]) == {"gpt-j-6b", "opt-6.7b", "pythia-6.9b", "llama-2-7b"}
    assert all(
        model["gpus"] >= 1 and model["partition"] and model["gpu_model"] for model in completed["models"].values()
    )
    assert completed["models"]
    hub = {name: d for name, d in completed["datasets"].items() if "WikiMIA" in d.get("hf", "")}
    for d in hub.values():
        assert d["text"] == "input" and d["label"] == "label"  # WikiMIA's fields
    attacked = {name for slug in completed["models"] for name in config.model_datasets(completed, slug)}
    assert attacked and attacked <= set(completed["datasets"])


# Defaults: written once, in the schema, and filled by one filler.

# fill_defaults's completions of minimal() and config/demo.yaml before the defaults had one
# source: models.<slug>, datasets.<name> and baselines, nested defaults included.
MINIMAL_COMPLETED = {
    "models": {
        "pythia": {"path": "EleutherAI/pythia-70m", "dtype": "float32", "gpus": 0, "mem_mb": 4000, "runtime": 60},
        "tiny": {
            "build": {
                "dataset": "demo",
                "arch": "gpt-neox",
                "hidden_size": 128,
                "num_layers": 4,
                "num_heads": 4,
                "intermediate_size": 512,
                "max_positions": 256,
                "vocab_size": 1024,
                "seed": 0,
                "base_epochs": 2,
                "base_lr": 0.001,
                "target_epochs": 3,
                "target_lr": 0.001,
                "batch_size": 4,
            },
            "dtype": "float32",
            "gpus": 0,
            "mem_mb": 4000,
            "runtime": 60,
        },
    },
    "datasets": {
        "wikimia": {"path": "data/wikimia.jsonl", "text": "input", "label": "label"},
        "other": {"hf": "someone/other", "split": "test", "text": "text", "label": "label"},
        "demo": {
            "controlled": {
                "corpus": {"generator": "templates", "n_documents": 40, "seed": 0, "text": "text"},
                "candidates": 10,
                "members": 0.5,
                "seed": 0,
            },
            "text": "text",
            "label": "label",
        },
    },
    "baselines": {
        "k": [5, 10, 20, 30, 40, 50, 60],
        "batch_size": 8,
        "samia": {"n_samples": 10, "texts_per_job": 50, "batch_size": 4, "seed": 0},
        "blind": {"folds": 5, "seed": 0},
        "dcpdd": {},
        "pac": {"augmentations": 5, "swap_ratio": 0.3, "seed": 0},
        "recall": {"shots": 5, "seed": 0},
        "fsd": {"texts": 20, "epochs": 3, "lr": 1e-4, "seed": 0},
    },
}
DEMO_COMPLETED = {
    "models": {
        slug: {
            "build": {
                "dataset": "demo",
                "arch": arch,
                "hidden_size": 64,
                "num_layers": 2,
                "num_heads": 4,
                "intermediate_size": 256,
                "max_positions": 256,
                "vocab_size": 1024,
                "seed": 0,
                "base_epochs": 2,
                "base_lr": 0.001,
                "target_epochs": 3,
                "target_lr": 0.001,
                "batch_size": 4,
            },
            "dtype": "float32",
            "gpus": 0,
            "mem_mb": 4000,
            "runtime": 60,
        }
        for slug, arch in (("pythia-tiny", "gpt-neox"), ("llama-tiny", "llama"))
    },
    "datasets": {
        "demo": {
            "controlled": {
                "corpus": {"generator": "templates", "n_documents": 1200, "seed": 7, "text": "text"},
                "candidates": 200,
                "members": 0.5,
                "seed": 0,
            },
            "text": "text",
            "label": "label",
        }
    },
    "baselines": {
        "k": [5, 10, 20, 30, 40, 50, 60],
        "batch_size": 8,
        "samia": {"n_samples": 10, "texts_per_job": 400, "batch_size": 4, "seed": 0},
        "blind": {"folds": 5, "seed": 0},
        "dcpdd": {},
        "pac": {"augmentations": 5, "swap_ratio": 0.3, "seed": 0},
        "recall": {"shots": 5, "seed": 0},
        "fsd": {"texts": 20, "epochs": 3, "lr": 1e-4, "seed": 0},
    },
}


@pytest.mark.parametrize("raw, expected", [(minimal(), MINIMAL_COMPLETED), (read(DEMO), DEMO_COMPLETED)])
def test_nested_defaults_are_filled_as_before(raw, expected):
    completed = config.validate(raw)
    for section, entries in expected.items():
        assert completed[section] == entries, section


def test_the_shipped_configs_are_completed_by_the_one_filler():
    for path in (DEMO, WIKIMIA):
        raw = read(path)
        assert config.validate(raw) == config.fill_defaults(raw)
    wikimia = read(WIKIMIA)  # spells out its models, data sets and baselines: nothing to fill there
    completed = config.validate(wikimia)
    assert all(completed[section] == wikimia[section] for section in ("models", "datasets", "baselines"))
    # The workflow fills no defaults of its own (snakemake.utils.validate with set_default).
    assert "set_default" not in (ROOT / "rules" / "common.smk").read_text()


def test_settings_from_an_empty_train_section_are_the_schema_defaults():
    from paramdelta import train

    schema_train = config.load_schema()["properties"]["train"]["properties"]
    settings = train.Settings.from_config({})
    assert settings == train.Settings() == train.Settings.from_config(config.defaults("train"))
    for field in dataclasses.fields(train.Settings):
        value = getattr(settings, field.name)
        assert (list(value) if field.name == "betas" else value) == schema_train[field.name]["default"], field.name
    assert train.Settings.from_config({"lr": 0.5}) == dataclasses.replace(settings, lr=0.5)


def _changed_defaults(node):
    """A copy of a schema with every scalar and list default changed (to a value of its type)."""
    if isinstance(node, list):
        return [_changed_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _changed_defaults(value) for key, value in node.items()}
    default = node.get("default")
    if isinstance(default, bool):
        node["default"] = not default
    elif isinstance(default, int):
        node["default"] = default + 1
    elif isinstance(default, float):
        node["default"] = default / 2 if default else 0.25
    elif isinstance(default, str):
        others = [value for value in node.get("enum", []) if value != default]
        node["default"] = others[0] if others else default + "-changed"
    elif isinstance(default, list):
        node["default"] = default[::-1]
    return node


# What the package's defaults of a config field are, printed as JSON by a fresh process that
# reads the schema named on its command line.
LIBRARY_DEFAULTS = """
import dataclasses, inspect, json, pathlib, sys
from paramdelta import config
config.SCHEMA_PATH = pathlib.Path(sys.argv[1])
from paramdelta import attacks, features, metrics, train
from paramdelta.attacks import forward, samia, score

def default(function, name):
    return inspect.signature(function).parameters[name].default

def with_parameter(module, name):  # every function of the module that gives `name` a default
    return {f"{module.__name__}.{key}": default(value, name) for key, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__
            and name in inspect.signature(value).parameters
            and default(value, name) is not inspect.Parameter.empty}

settings = train.Settings.from_config({})
print(json.dumps({
    "train": {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)},
    "settings": dataclasses.asdict(train.Settings()),
    "samia": {name: default(samia.samia_scores, name) for name in ("n_samples", "seed", "batch_size")},
    "blind": {"folds": default(attacks.blind_scores, "n_folds"), "seed": default(attacks.blind_scores, "seed")},
    "k": [list(attacks.K_GRID), list(default(score.score_texts, "ks")), list(default(score.score_documents, "ks"))],
    "batch_size": [default(score.score_texts, "batch_size"), default(forward.token_stats, "batch_size")],
    "bootstrap": with_parameter(metrics, "n_boot"),
    "metrics_seed": with_parameter(metrics, "seed"),
    "aggregate": with_parameter(features, "aggregate"),
}))
"""


def test_the_package_takes_its_defaults_from_the_schema(tmp_path):
    """With every default of the schema changed, every default of a config field in the
    package changes with it: no value is written a second time."""
    changed = _changed_defaults(config.load_schema())
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(changed))
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY_DEFAULTS, str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout)
    expected = config.fill_defaults({}, changed)
    assert expected["train"] != config.defaults("train")  # the changed schema differs
    fields = got["train"].keys()
    assert got["train"] == got["settings"] == {name: expected["train"][name] for name in fields}
    baselines, bootstrap, seed = expected["baselines"], expected["metrics"]["bootstrap"], expected["metrics"]["seed"]
    assert got["samia"] == {name: baselines["samia"][name] for name in ("n_samples", "seed", "batch_size")}
    assert got["blind"] == baselines["blind"]
    assert got["k"] == [[float(k) for k in baselines["k"]]] * 3
    assert got["batch_size"] == [baselines["batch_size"]] * 2
    assert got["bootstrap"] and set(got["bootstrap"].values()) == {bootstrap}
    assert got["metrics_seed"] and set(got["metrics_seed"].values()) == {seed}
    assert got["aggregate"] and set(got["aggregate"].values()) == {expected["features"]["aggregate"]}


# Schema errors name the field.


def test_unknown_key(demo):
    demo["train"] = {"lrr": 1}
    message = error_of(demo)
    assert "train" in message and "lrr" in message


def test_unknown_top_level_key(demo):
    demo["snapshot"] = {"store": "full"}
    assert "snapshot" in error_of(demo)


def test_unknown_model_key(demo):
    demo["models"]["pythia-tiny"]["dtpye"] = "bfloat16"
    message = error_of(demo)
    assert "models.pythia-tiny" in message and "dtpye" in message


def test_wrong_type_in_budgets(demo):
    demo["budgets"] = [5, "ten"]
    message = error_of(demo)
    assert "budgets[1]" in message and "ten" in message


def test_budget_below_one(demo):
    demo["budgets"] = [0, "es"]
    message = error_of(demo)
    assert "budgets[0]" in message and "minimum" in message


def test_budget_of_no_accepted_type(demo):
    demo["budgets"] = [5, 2.5]
    message = error_of(demo)
    assert "budgets[1]" in message and "integer" in message


def test_repeated_budgets(demo):
    demo["budgets"] = [5, 5]
    assert "budgets" in error_of(demo)


def test_wrong_value(demo):
    demo["snapshots"] = {"store": "everything"}
    message = error_of(demo)
    assert "snapshots.store" in message and "everything" in message


def test_negative_lr(demo):
    demo["train"]["lr"] = -1e-5
    assert "train.lr" in error_of(demo)


def test_zero_lr(demo):
    demo["train"]["lr"] = 0
    assert "train.lr" in error_of(demo)


def test_beta_out_of_range(demo):
    demo["train"]["betas"] = [0.9, 1.0]
    assert "train.betas[1]" in error_of(demo)


def test_wrong_nested_type(demo):
    demo["models"]["llama-tiny"]["build"]["hidden_size"] = "big"
    assert "models.llama-tiny.build.hidden_size" in error_of(demo)


def test_k_out_of_range(demo):
    demo["features"] = {"k": [1, 200]}
    assert "features.k[1]" in error_of(demo)


def test_bad_slug(demo):
    demo["models"]["bad slug"] = {"path": "x"}
    message = error_of(demo)
    assert "models" in message and "bad slug" in message


def test_model_with_both_path_and_build(demo):
    demo["models"]["pythia-tiny"]["path"] = "EleutherAI/pythia-70m"
    message = error_of(demo)
    assert "models.pythia-tiny" in message
    assert "path" in message and "build" in message and "exactly one" in message


def test_model_with_neither_path_nor_build(demo):
    del demo["models"]["pythia-tiny"]["build"]
    message = error_of(demo)
    assert "models.pythia-tiny" in message
    assert "path" in message and "build" in message and "exactly one" in message


def test_build_with_both_arch_and_base(demo):
    demo["models"]["pythia-tiny"]["build"]["base"] = "EleutherAI/pythia-70m"
    message = error_of(demo)
    assert "models.pythia-tiny.build" in message and "arch" in message and "base" in message


def test_dataset_with_no_source(demo):
    demo["datasets"]["nowhere"] = {"text": "input"}
    message = error_of(demo)
    assert "datasets.nowhere" in message
    for key in ("path", "hf", "controlled"):
        assert key in message


def test_hub_dataset_without_split(demo):
    demo["datasets"]["wikimia"] = {"hf": "swj0419/WikiMIA"}
    message = error_of(demo)
    assert "datasets.wikimia" in message and "split" in message


def test_corpus_with_generator_and_path(demo):
    demo["datasets"]["demo"]["controlled"]["corpus"]["path"] = "corpus.jsonl"
    message = error_of(demo)
    assert "datasets.demo.controlled.corpus" in message and "generator" in message


def test_missing_models():
    cfg = minimal()
    del cfg["models"]
    assert "models" in error_of(cfg)


# Cross references.


def test_cuda_device_with_a_model_that_asks_for_no_gpu(demo):
    demo["train"]["device"] = "cuda"
    message = error_of(demo)
    assert "models.pythia-tiny.gpus" in message and "no GPU" in message


def test_several_gpus_need_the_deepspeed_engine(demo):
    demo["train"]["parallel_texts"] = 1  # side by side is the torch engine's
    demo["models"]["pythia-tiny"]["gpus"] = 2
    message = error_of(demo)
    assert "models.pythia-tiny.gpus" in message and "deepspeed" in message
    demo["models"]["pythia-tiny"]["engine"] = "deepspeed"
    assert config.validate(demo)["models"]["pythia-tiny"]["gpus"] == 2


def test_texts_side_by_side_need_the_torch_engine_and_no_fp16(demo):
    demo["train"]["parallel_texts"] = 8
    assert config.validate(copy.deepcopy(demo))["train"]["parallel_texts"] == 8
    demo["models"]["pythia-tiny"]["engine"] = "deepspeed"
    message = error_of(demo)
    assert "train.parallel_texts" in message and "pythia-tiny" in message and "deepspeed" in message
    demo["models"]["pythia-tiny"]["engine"] = "torch"
    demo["train"]["precision"] = "fp16"
    assert "train.parallel_texts" in error_of(demo)
    demo["train"].update(precision="fp32", parallel_texts=0)
    assert "train.parallel_texts" in error_of(demo)


def test_replaying_the_best_epoch_is_one_text_at_a_time(demo):
    demo["train"].update(parallel_texts=8, best_state="replay")
    message = error_of(demo)
    assert "train.best_state" in message and "side by side" in message
    demo["train"]["parallel_texts"] = 1
    assert config.validate(copy.deepcopy(demo))["train"]["best_state"] == "replay"
    demo["train"]["best_state"] = "later"
    assert "train.best_state" in error_of(demo)


@pytest.mark.parametrize("field, value", [("gpu_model", "h100 'x'"), ("partition", ""), ("cpus", 0)])
def test_bad_scheduler_fields(demo, field, value):
    demo["models"]["pythia-tiny"][field] = value
    assert f"models.pythia-tiny.{field}" in error_of(demo)


def test_build_on_unknown_dataset(demo):
    demo["models"]["pythia-tiny"]["build"]["dataset"] = "nonexistent"
    message = error_of(demo)
    assert "models.pythia-tiny.build.dataset" in message and "nonexistent" in message


def test_build_on_a_dataset_that_is_not_controlled():
    cfg = minimal()
    cfg["models"]["tiny"]["build"]["dataset"] = "wikimia"
    message = error_of(cfg)
    assert "models.tiny.build.dataset" in message and "wikimia" in message


def test_unknown_dataset_in_model_list():
    cfg = minimal()
    cfg["models"]["pythia"]["datasets"] = ["wikimia", "wikimai"]
    message = error_of(cfg)
    assert "models.pythia.datasets" in message and "wikimai" in message


def test_model_listing_a_controlled_dataset_it_was_not_built_on(demo):
    demo["datasets"]["demo2"] = copy.deepcopy(demo["datasets"]["demo"])
    demo["models"]["pythia-tiny"]["datasets"] = ["demo2"]
    message = error_of(demo)
    assert "models.pythia-tiny.datasets" in message and "demo2" in message


def test_hub_model_listing_a_controlled_dataset():
    cfg = minimal()
    cfg["models"]["pythia"]["datasets"] = ["demo"]
    message = error_of(cfg)
    assert "models.pythia.datasets" in message and "demo" in message


def test_more_candidates_than_documents():
    cfg = minimal()
    cfg["datasets"]["demo"]["controlled"]["candidates"] = 41
    message = error_of(cfg)
    assert "datasets.demo.controlled.candidates" in message


def test_no_model_attacks_anything():
    cfg = {
        "datasets": {"demo": {"controlled": {"corpus": {"generator": "templates"}}}},
        "models": {"pythia": {"path": "EleutherAI/pythia-70m"}},
    }
    with pytest.raises(config.ConfigError, match="no model attacks"):
        config.validate(cfg)


# Which data sets a model attacks.


def test_model_datasets_defaults():
    completed = config.validate(minimal())
    assert config.model_datasets(completed, "tiny") == ["demo"]  # built: its own
    assert config.model_datasets(completed, "pythia") == ["wikimia", "other"]  # hub: all non-controlled


def test_model_datasets_explicit_list():
    cfg = minimal()
    cfg["models"]["pythia"]["datasets"] = ["other"]
    cfg["models"]["tiny"]["datasets"] = ["demo", "wikimia"]
    completed = config.validate(cfg)
    assert config.model_datasets(completed, "pythia") == ["other"]
    assert config.model_datasets(completed, "tiny") == ["demo", "wikimia"]


def test_model_datasets_empty_list_attacks_nothing():
    cfg = minimal()
    cfg["models"]["pythia"]["datasets"] = []
    completed = config.validate(cfg)
    assert config.model_datasets(completed, "pythia") == []


# Budgets.


def test_budget_epochs():
    assert config.budget_epochs("es") is None
    assert config.budget_epochs(10) == 10
    assert config.budget_epochs("10") == 10
    assert config.budget_epochs(1) == 1


def test_ref_attack_needs_a_reference_model():
    demo = yaml.safe_load(DEMO.read_text())
    demo["attacks"] = ["loss", "ref"]
    with pytest.raises(config.ConfigError, match="baselines.reference"):
        config.validate(demo)
    demo["baselines"] = {"reference": "some/reference-model"}
    assert config.validate(demo)["baselines"]["reference"] == "some/reference-model"


def test_attack_families_match_the_registry():
    from paramdelta import attacks
    from paramdelta.attacks import fsd, gradnorm, pac, recall
    from paramdelta.config import LABELLED_ATTACKS, LOGPROB_ATTACKS

    # The model-pass job runs the registry's attacks (one shared forward pass), and the attacks with
    # passes of their own: PAC, ReCaLL, FSD and the gradient norm.
    own_passes = {pac.NAME, recall.NAME, fsd.NAME, gradnorm.NAME}
    assert set(LOGPROB_ATTACKS) == set(attacks.ATTACKS) | own_passes
    assert set(LABELLED_ATTACKS) == {recall.NAME, fsd.NAME}


# Training settings compared beside the train: block (optimizers:).


def test_optimizer_settings_are_the_train_block_with_each_entrys_changes(demo):
    demo["optimizers"] = {
        "sgd": {"optimizer": "sgd", "lr": 1e-2, "weight_decay": 0.0, "budgets": [10]},
        "adam-eps": {"eps": 1e-2},
    }
    completed = config.validate(demo)
    settings = config.optimizer_settings(completed)
    assert list(settings) == ["default", "sgd", "adam-eps"]
    assert settings["default"] == completed["train"]
    assert settings["sgd"] == {**completed["train"], "optimizer": "sgd", "lr": 1e-2, "weight_decay": 0.0}
    assert settings["adam-eps"] == {**completed["train"], "eps": 1e-2}
    assert config.optimizer_budgets(completed, "default") == ["5", "10", "20", "30", "es"]
    assert config.optimizer_budgets(completed, "sgd") == ["10"]
    assert config.optimizer_budgets(completed, "adam-eps") == ["5", "10", "20", "30", "es"]
    assert [config.method_name(name) for name in settings] == ["param-delta", "param-delta:sgd", "param-delta:adam-eps"]
    assert all(map(config.is_param_delta, ["param-delta", "param-delta:sgd"]))
    assert not any(map(config.is_param_delta, ["loss", "param-deltas", "mink"]))


def test_a_config_without_optimizers_has_the_default_setting_only(demo):
    del demo["optimizers"]
    completed = config.validate(demo)
    assert completed["optimizers"] == {}
    assert list(config.optimizer_settings(completed)) == ["default"]


@pytest.mark.parametrize(
    "optimizers, field, words",
    [
        ({"default": {"lr": 1e-2}}, "optimizers", "default"),
        ({"sgd": {"optimizer": "sgd", "lrr": 1e-2}}, "optimizers.sgd", "lrr"),
        ({"sgd": {"optimizer": "rmsprop"}}, "optimizers.sgd.optimizer", "rmsprop"),
        ({"sgd": {"lr": 0}}, "optimizers.sgd.lr", "0"),
        ({"sgd": {}}, "optimizers.sgd", "non-empty"),
        ({"bad name": {"lr": 1e-2}}, "optimizers", "bad name"),
        ({"sgd": {"optimizer": "sgd", "budgets": [7]}}, "optimizers.sgd.budgets", "[7]"),
        ({"sgd": {"optimizer": "sgd", "budgets": ["es", 40]}}, "optimizers.sgd.budgets", "[40]"),
    ],
)
def test_bad_optimizer_settings_name_the_field(demo, optimizers, field, words):
    demo["optimizers"] = optimizers
    message = error_of(demo)
    assert f"'{field}" in message and words in message, message


@pytest.mark.parametrize(
    ("snapshots", "optimizers", "name", "budget", "expected"),
    [
        ({"trajectory": True}, {"c": {"schedule": "constant", "budgets": [30]}}, "c", "30", ["5", "10", "20"]),
        ({"trajectory": True}, {"c": {"schedule": "constant", "budgets": [10, 30]}}, "c", "30", ["5", "20"]),
        ({"trajectory": True}, {"c": {"schedule": "constant", "budgets": [10, 30]}}, "c", "10", []),
        ({"trajectory": True}, {"c": {"schedule": "constant", "budgets": [30]}}, "default", "30", []),  # cosine
        ({"trajectory": False}, {"c": {"schedule": "constant", "budgets": [30]}}, "c", "30", []),
        ({"trajectory": True}, {"c": {"schedule": "constant", "budgets": ["es"]}}, "c", "es", []),
    ],
)
def test_trajectory_budgets_only_from_a_constant_schedules_longest_run(snapshots, optimizers, name, budget, expected):
    completed = config.validate(
        {
            "datasets": {"d": {"path": "texts.jsonl"}},
            "models": {"m": {"path": "some/model"}},
            "budgets": [5, 10, 20, 30, "es"],
            "snapshots": snapshots,
            "optimizers": optimizers,
        }
    )
    assert config.trajectory_budgets(completed, name, budget) == expected
