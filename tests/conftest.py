"""Shared fixtures: a tiny locally trained tokenizer and model saved as a Hugging Face directory.

Nothing is downloaded: the tokenizer is trained on the project's own synthetic corpus and the
model is randomly initialised, then both go through the same save / from_pretrained path as
a hub model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# DeepSpeed compiles a small communication op on first use (about 30 s); keep it in the repo's
# cache so later test runs reuse it. Set before anything imports deepspeed.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))

TINY = dict(hidden_size=32, num_layers=2, num_heads=4, max_positions=64)


def _special_ids(tokenizer) -> dict:
    return dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A 300-token byte-level BPE tokenizer trained on the synthetic corpus (in memory)."""
    from paramdelta import corpus, target

    return target.train_tokenizer(corpus.generate_corpus(300, 0), 300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny GPT-NeoX model and its tokenizer saved as one Hugging Face directory."""
    from paramdelta import models, target

    config = models.tiny_config("gpt-neox", len(tiny_tokenizer), **TINY, **_special_ids(tiny_tokenizer))
    model = models.build_model(config, seed=0)
    path = tmp_path_factory.mktemp("tiny-model") / "pythia-tiny"
    target.save(model, tiny_tokenizer, path)
    return path


@pytest.fixture
def load_tiny(tiny_model_dir):
    """Callable returning a fresh copy of the tiny model, loaded with models.load_causal_lm."""
    from paramdelta import models

    return lambda: models.load_causal_lm(str(tiny_model_dir))


@pytest.fixture(scope="session")
def saved_tokenizer(tiny_model_dir):
    """The tokenizer as AutoTokenizer.from_pretrained loads it back from the model directory."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    """A few documents of the synthetic corpus that the tokenizer was not trained on."""
    from paramdelta import corpus

    return corpus.generate_corpus(4, 1)


@pytest.fixture(scope="session")
def three_texts(tmp_path_factory, sample_texts) -> tuple[str, dict[str, int]]:
    """A data set table (Parquet) of three short texts, and their labels: a training job's input."""
    import pandas as pd

    from paramdelta import data

    texts = sample_texts[:3]
    table = pd.DataFrame({"text_id": [data.text_id(t) for t in texts], "text": texts, "label": [1, 0, 1]})
    path = tmp_path_factory.mktemp("dataset") / "data.parquet"
    table.to_parquet(path)
    return str(path), dict(zip(table.text_id, table.label))


@pytest.fixture(params=("gpt-neox", "llama", "gptj", "opt"))
def arch_model(request, tiny_tokenizer):
    """A tiny randomly initialised model of each supported architecture (not saved)."""
    from paramdelta import models

    config = models.tiny_config(request.param, len(tiny_tokenizer), **TINY, **_special_ids(tiny_tokenizer))
    return models.build_model(config, seed=0)


@pytest.fixture(scope="module")
def single_thread():
    """Run torch on one thread for a module: for models this small, a second thread only adds
    contention (a training step is ~50x slower with two threads on a busy 2-core machine)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_terminal_summary(terminalreporter):
    """The count of bad inputs the suite showed stopping before any job (tests/test_bad_input.py)."""
    passed = [report.nodeid for report in terminalreporter.stats.get("passed", [])]
    configs = sum("test_bad_input.py::test_bad_config[" in nodeid for nodeid in passed)
    datasets = sum("test_bad_input.py::test_bad_dataset[" in nodeid for nodeid in passed)
    if configs or datasets:
        terminalreporter.write_line(
            f"bad input: {configs} malformed configs and {datasets} malformed data sets stopped before any job, "
            "each with a message naming the field, file or rows"
        )
