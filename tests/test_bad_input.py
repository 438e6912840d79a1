"""Bad input, table-driven: every malformed config and data set stops the run before any job.

Each case is checked through `paramdelta.inputs.check`, what rules/common.smk runs while
Snakemake parses the workflow (so before anything is scheduled), and must raise one error
whose message names the field, file or rows at fault. A few of them also go through a real
`snakemake -n` (tests/test_workflow.py). The count of cases is printed at the end of the
suite (conftest.pytest_terminal_summary).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from paramdelta import inputs
from paramdelta.config import ConfigError
from paramdelta.data import DataError

GOOD_ROWS = [{"input": f"candidate text number {i} about topic {i * 7 % 11}", "label": i % 2} for i in range(12)]


def _jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def base(tmp_path, monkeypatch) -> dict:
    """A valid config: one local JSONL data set of 12 texts (6 members) and one hub model."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts.jsonl").write_text(_jsonl(GOOD_ROWS))
    return {
        "datasets": {"wiki": {"path": "texts.jsonl", "text": "input"}},
        "models": {"pythia": {"path": "EleutherAI/pythia-70m"}},
        "budgets": [5],
    }


def test_the_base_config_is_good(base):
    completed, tables = inputs.check(base)
    assert len(tables["wiki"]) == 12 and completed["budgets"] == [5]


_EXPERIMENT = {
    "training": {"a": {"generator": "tasks", "task": "successor", "n": 4}},
    "evaluation": {"e": {"generator": "tasks", "task": "after", "n": 4}},
}


def _set(path: str, value):
    """A change that sets config field `path` (dots between keys) to `value`."""

    def change(config, tmp_path):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def _drop(key: str):
    def change(config, tmp_path):
        del config[key]

    return change


def _model(slug: str, spec: dict):
    def change(config, tmp_path):
        config["models"] = {slug: spec}

    return change


def _deepspeed(text: str | None):
    def change(config, tmp_path):
        config["train"] = {"engine": "deepspeed", "deepspeed_config": "ds.json"}
        if text is not None:
            (tmp_path / "ds.json").write_text(text)

    return change


def _both(*changes):
    def change(config, tmp_path):
        for one in changes:
            one(config, tmp_path)

    return change


# (case id, change to the base config, text the message must contain)
CONFIG_CASES = [
    ("no models", _drop("models"), "models"),
    ("no datasets", _drop("datasets"), "datasets"),
    ("unknown top-level key", _set("modells", {}), "modells"),
    ("unknown train key", _set("train.lrr", 1.0), "lrr"),
    ("lr not a number", _set("train.lr", "fast"), "train.lr"),
    ("lr of zero", _set("train.lr", 0), "train.lr"),
    ("budget 0", _set("budgets", [0]), "budgets[0]"),
    ("budget -1", _set("budgets", [5, -1]), "budgets[1]"),
    ("budget 'ten'", _set("budgets", [5, "ten"]), "budgets[1]"),
    ("no budgets", _set("budgets", []), "budgets"),
    ("K of 0", _set("features.k", [0, 5]), "features.k[0]"),
    ("K above 100", _set("features.k", [5, 101]), "features.k[1]"),
    ("K not a number", _set("features.k", ["five"]), "features.k[0]"),
    ("empty selection list", _set("features.selections", []), "features.selections"),
    ("unknown selection", _set("features.selections", ["all", "everything"]), "features.selections[1]"),
    ("slug with a slash", _model("org/pythia", {"path": "EleutherAI/pythia-70m"}), "org/pythia"),
    ("slug '..'", _model("..", {"path": "EleutherAI/pythia-70m"}), ".."),
    ("model directory that does not exist", _model("local", {"path": "/no/such/model"}), "models.local.path"),
    ("model path with '..'", _model("local", {"path": "../models/pythia"}), "models.local.path"),
    (
        "hub data set not fetched",
        _set("datasets", {"hubbed": {"hf": "someone/texts", "split": "test"}}),
        "has not been fetched",
    ),
    ("DeepSpeed JSON that is not JSON", _deepspeed("{zero: 2"), "train.deepspeed_config"),
    ("DeepSpeed JSON that is a list", _deepspeed("[1, 2]"), "train.deepspeed_config"),
    ("DeepSpeed JSON missing", _deepspeed(None), "train.deepspeed_config"),
    (
        "DeepSpeed's CPU Adam without ZeRO-Offload",
        _both(_deepspeed('{"zero_optimization": {"stage": 2}}'), _set("train.offload_adam", "deepspeed")),
        "train.offload_adam",
    ),
    ("texts_per_job 0", _set("texts_per_job", 0), "texts_per_job"),
    ("parallel_texts 0", _set("train.parallel_texts", 0), "train.parallel_texts"),
    ("unknown precision", _set("train.precision", "fp8"), "train.precision"),
    ("unknown optimizer", _set("train.optimizer", "adam"), "train.optimizer"),
    ("one beta", _set("train.betas", [0.9]), "train.betas"),
    ("unknown weight-decay scope", _set("train.weight_decay_on", "some"), "train.weight_decay_on"),
    ("unknown snapshot store", _set("snapshots.store", "everything"), "snapshots.store"),
    (
        "model attacks an unknown data set",
        _model("pythia", {"path": "EleutherAI/pythia-70m", "datasets": ["nope"]}),
        "models.pythia.datasets",
    ),
    ("ref attack without a reference model", _set("attacks", ["loss", "ref"]), "baselines.reference"),
    (
        "fp16 side by side",
        _both(_set("train.parallel_texts", 4), _set("train.precision", "fp16")),
        "train.parallel_texts",
    ),
    (
        "cuda without GPUs",
        _both(_set("train.device", "cuda"), _model("pythia", {"path": "EleutherAI/pythia-70m", "gpus": 0})),
        "models.pythia.gpus",
    ),
    ("bfloat16 full snapshots", _set("snapshots", {"store": "full", "dtype": "bfloat16"}), "snapshots.dtype"),
    (
        "attribution model directory that does not exist",
        _set("attribution", {"experiments": {"t": {**_EXPERIMENT, "model": {"path": "/no/such/model"}}}}),
        "attribution.experiments.t.model.path",
    ),
    (
        "attribution hub model not fetched",
        _set("attribution", {"experiments": {"t": {**_EXPERIMENT, "model": {"path": "someone/small-lm"}}}}),
        "model of attribution experiment t (someone/small-lm @ main)",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [case[1:] for case in CONFIG_CASES], ids=[case[0] for case in CONFIG_CASES]
)
def test_bad_config(base, tmp_path, change, expected):
    config = copy.deepcopy(base)
    change(config, tmp_path)
    with pytest.raises((ConfigError, DataError)) as caught:
        inputs.check(config)
    message = str(caught.value)
    assert expected in message, message
    assert "\n" not in message.strip()  # one message, not a dump


def _file(name: str, content: bytes | str, **spec):
    """A data set read from file `name` holding `content`."""

    def write(tmp_path: Path) -> dict:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {"path": name, "text": "input", **spec}

    return write


def _rows(rows, name="bad.jsonl"):
    return _file(name, _jsonl(rows))


def _relabel(labels):
    return _rows([{**row, "label": label} for row, label in zip(GOOD_ROWS, labels)])


CSV_HEADER = "input,label\n"
# (case id, data set spec writer, text the message must contain)
DATA_CASES = [
    ("empty file", _file("empty.jsonl", b""), "empty.jsonl is empty"),
    (
        "not UTF-8",
        _file("latin.jsonl", '{"input": "caf\u00e9", "label": 1}\n'.encode("latin-1")),
        "latin.jsonl is not UTF-8",
    ),
    (
        "broken JSON line",
        _file("broken.jsonl", _jsonl(GOOD_ROWS[:3]) + '{"input": "x", "label"\n'),
        "broken.jsonl cannot be read as jsonl",
    ),
    ("not Parquet", _file("fake.parquet", b"PAR2 not really"), "fake.parquet cannot be read as parquet"),
    ("unknown format", _file("texts.txt", "a\nb\n"), "unknown format '.txt'"),
    (
        "file that does not exist",
        lambda tmp_path: {"path": "missing.jsonl", "text": "input"},
        "missing.jsonl does not exist",
    ),
    (
        "CSV without the label column",
        _file("nolabel.csv", "input\n" + "".join(f"text {i}\n" for i in range(12))),
        "no field 'label'",
    ),
    (
        "CSV without the text column",
        _file("notext.csv", "body,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(12))),
        "no field 'input'",
    ),
    ("duplicate texts", _rows(GOOD_ROWS + [{**GOOD_ROWS[3], "label": 1}]), "duplicate texts in rows [3, 12]"),
    ("label 2", _relabel([1, 0, 2] + [i % 2 for i in range(3, 12)]), "rows [2] are not"),
    ("label -1", _relabel([i % 2 for i in range(11)] + [-1]), "rows [11] are not"),
    ("label 'yes'", _relabel(["yes"] + [i % 2 for i in range(1, 12)]), "rows [0] are not"),
    ("label missing", _relabel([None] + [i % 2 for i in range(1, 12)]), "rows [0] are not"),
    (
        "label missing in a CSV row",
        _file("gap.csv", CSV_HEADER + "".join(f"text {i},{'' if i == 4 else i % 2}\n" for i in range(12))),
        "rows [4] are not",
    ),
    (
        "text of only whitespace",
        _rows(GOOD_ROWS[:5] + [{"input": " \t\n ", "label": 1}] + GOOD_ROWS[6:]),
        "empty text in rows [5]",
    ),
    (
        "text that is a number",
        _rows(GOOD_ROWS[:7] + [{"input": 2024, "label": 1}] + GOOD_ROWS[8:]),
        "not a string in rows [7]",
    ),
    ("only members", _relabel([1] * 12), "needs both members (1) and non-members (0); found only [1]"),
    ("only non-members", _relabel([0] * 12), "found only [0]"),
    ("fewer members than CV folds", _relabel([1, 1, 1] + [0] * 9), "3 members, fewer than the 5 folds"),
]


@pytest.mark.parametrize(("write", "expected"), [case[1:] for case in DATA_CASES], ids=[case[0] for case in DATA_CASES])
def test_bad_dataset(base, tmp_path, write, expected):
    config = copy.deepcopy(base)
    config["datasets"] = {"wiki": write(tmp_path)}
    with pytest.raises(DataError) as caught:
        inputs.check(config)
    message = str(caught.value)
    assert expected in message, message
    assert "data" in message and "\n" not in message.strip()


def test_fewer_texts_than_folds_is_fine_without_top_k(base, tmp_path):
    config = copy.deepcopy(base)
    (tmp_path / "few.jsonl").write_text(
        _jsonl([{**row, "label": label} for row, label in zip(GOOD_ROWS, [1, 1, 1] + [0] * 9)])
    )
    config["datasets"] = {"wiki": {"path": "few.jsonl", "text": "input"}}
    config["features"] = {"selections": ["all", "attention"]}
    _, tables = inputs.check(config)
    assert tables["wiki"]["label"].sum() == 3


def test_there_are_enough_cases():
    assert len(CONFIG_CASES) >= 25 and len(DATA_CASES) >= 12
