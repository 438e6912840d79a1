"""Tests of the cost estimate: steps, parameters and disk against hand-computed values, the
byte counts against a store the training job really writes, and clear messages for what is unknown."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from paramdelta import config as config_checks
from paramdelta import corpus, data, estimate, models, target, train

# The tiny controlled model of demo_like(): GPT-NeoX, hidden 32, FFN 64, 2 blocks, vocabulary 300.
# Layers (parameter-owning modules): embed_in; per block 2 LayerNorms, query_key_value, dense,
# dense_h_to_4h, dense_4h_to_h (6); final_layer_norm; embed_out -> 1 + 12 + 1 + 1 = 15.
# Tensors: embed_in 1; per block 2 x 2 (norms) + 4 x 2 (weights and biases) = 12; final norm 2;
# embed_out 1 -> 28. Parameters: 300 x 32 (embed_in) + 2 x (2 x 64 + 32 x 96 + 96 + 32 x 32 + 32
# + 32 x 64 + 64 + 64 x 32 + 32) + 64 + 32 x 300 (embed_out) = 9,600 + 17,088 + 64 + 9,600.
TINY_LAYERS, TINY_TENSORS, TINY_PARAMS = 15, 28, 36_352


def demo_like(tmp_path) -> dict:
    return config_checks.validate(
        {
            "datasets": {
                "demo": {
                    "controlled": {
                        "corpus": {"generator": "templates", "n_documents": 60, "seed": 7},
                        "candidates": 10,
                        "members": 0.5,
                    }
                }
            },
            "models": {
                "tiny": {
                    "build": {
                        "dataset": "demo",
                        "arch": "gpt-neox",
                        "hidden_size": 32,
                        "num_layers": 2,
                        "num_heads": 4,
                        "intermediate_size": 64,
                        "vocab_size": 300,
                    }
                }
            },
            "budgets": [2, "es"],
            "train": {"max_length": 16, "max_epochs": 6, "patience": 2},
            "features": {"k": [1, 2]},
            "texts_per_job": 4,
            "results": str(tmp_path / "results"),
        }
    )


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory (no data/hub/ or results/ of the checkout is seen); the switches
    that estimate.main's hub.offline() sets are restored afterwards."""
    import huggingface_hub.constants

    from paramdelta import hub

    monkeypatch.chdir(tmp_path)
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, "0"))  # undone at the end, unset if it was
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", huggingface_hub.constants.HF_HUB_OFFLINE)
    return tmp_path


def test_controlled_model_steps_parameters_and_disk(in_tmp):
    cfg = demo_like(in_tmp)
    notes = []
    [row] = estimate.estimate(cfg, ["cpu-2core"], notes=notes)

    # Tokens as the training job will see them: the tokenizer the base_model rule trains on the background.
    table, background = data.controlled_split(corpus.generate_corpus(60, 7), 10, 0.5, 0)
    tokenizer = target.train_tokenizer(background, 300)
    assert len(tokenizer) == 300
    tokens = [len(tokenizer(t)["input_ids"]) for t in table["text"]]
    chunks = sum(math.ceil(n / 16) for n in tokens)
    assert chunks > 10  # some texts are longer than max_length 16: several chunks
    assert row.texts == 10 and row.tokens_per_text == pytest.approx(sum(tokens) / 10)
    assert row.chunks_per_text == pytest.approx(chunks / 10)
    # Steps per (text, budget): epochs x chunks; es expected round(0.89 x 6) = 5 epochs, at most 6.
    assert row.steps["2"] == pytest.approx(2 * chunks / 10)
    assert row.steps["es"] == pytest.approx(5 * chunks / 10)
    assert row.steps_es_max == pytest.approx(6 * chunks / 10)
    assert row.params == TINY_PARAMS
    shards = len(data.shards(table["text_id"].tolist(), 4))
    assert row.jobs == 2 * shards
    assert ("tokens", "a tokenizer trained as the base_model rule trains it", "tiny") in notes

    # Disk: float64 statistics, layers x (4 + |K|) + tensors, and loss + lr per epoch (under es as
    # long as max_epochs: the job's longest run), plus the text's record; per job, the root's
    # attributes (the layer list) and eight arrays' metadata.
    record = estimate.RECORD_BYTES
    assert row.run_bytes["2"] == record + 8 * (15 * (4 + 2) + 28) + 8 * 2 * 2 == record + 976
    assert row.run_bytes["es"] == record + 944 + 8 * 2 * 6 == record + 1040
    info = estimate.model_info(cfg, "tiny")
    assert (info.layers, info.tensors) == (TINY_LAYERS, TINY_TENSORS)
    per_job = estimate.JOB_OVERHEAD + info.layer_attrs + 8 * estimate.ARRAY_OVERHEAD
    assert row.store_bytes == 10 * (976 + 1040 + 2 * record) + row.jobs * per_job
    assert row.store_files == row.jobs * 17  # root, and zarr.json + one chunk for each of 8 arrays
    assert row.base_bytes == TINY_PARAMS * 4 + 28 * estimate.ARRAY_OVERHEAD + estimate.JOB_OVERHEAD
    # With snapshots.trajectory: each layer's change after each epoch, and one array more a job.
    traced = {**cfg, "snapshots": {**cfg["snapshots"], "trajectory": True}}
    [with_trajectory] = estimate.estimate(traced, ["cpu-2core"])
    assert with_trajectory.run_bytes["2"] == row.run_bytes["2"] + 8 * 15 * 2
    assert with_trajectory.store_files == row.jobs * 19

    # Time: the sum over budgets of epochs x steps, the work around each text-run, and the jobs' start.
    device = estimate.COST_MODEL["devices"]["cpu-2core"]
    epoch = sum(
        estimate.step_seconds(device, cfg, "tiny", TINY_PARAMS, t) for n in tokens for t in estimate.chunk_sizes(n, 16)
    )
    evaluation = sum(
        estimate.eval_seconds(device, cfg, "tiny", TINY_PARAMS, t) for n in tokens for t in estimate.chunk_sizes(n, 16)
    )
    assert 0 < evaluation < epoch / 2  # a forward pass without gradients a chunk, under es only
    around = estimate.run_overhead_seconds(device, cfg, "tiny", TINY_PARAMS, 1)
    best = estimate.run_overhead_seconds(device, cfg, "tiny", TINY_PARAMS, 5 - 2)  # summaries: 5 epochs - patience 2
    start = device["job_start_s"] + TINY_PARAMS * 4 / device["load_bandwidth"]
    assert row.seconds["cpu-2core"]["expected"] == pytest.approx(
        2 * epoch + 10 * around + 5 * (epoch + evaluation) + 10 * best + row.jobs * start
    )

    # The longest job: the largest shard (about 4 texts, at most 8) at the dearest budget, every run at its longest
    # (es: 6 epochs, each a new best), against the model's runtime.
    largest = max(map(len, data.shards(table["text_id"].tolist(), 4).values()))
    es_longest = (
        6 * (epoch + evaluation) + 10 * estimate.run_overhead_seconds(device, cfg, "tiny", TINY_PARAMS, 6)
    ) / 10
    assert 4 <= largest <= 8 and es_longest > (2 * epoch + 10 * around) / 10
    assert row.seconds["cpu-2core"]["longest_job"] == pytest.approx(start + largest * es_longest)

    # Each device is estimated alone: asking for several changes none of them.
    [both] = estimate.estimate(cfg, ["h100", "cpu-2core", "h200"])
    assert both.seconds["cpu-2core"] == row.seconds["cpu-2core"]
    assert both.seconds["h200"] == estimate.estimate(cfg, ["h200"])[0].seconds["h200"]

    # Replaying the best epoch (train.best_state): a digest of the state at each new best epoch,
    # then one summary a run, after restoring the base again, training to the best epoch (expected
    # 5 - patience 2; at most the one before the cap) and one evaluation.
    replaying = config_checks.validate({**cfg, "train": {**cfg["train"], "best_state": "replay"}})
    [replayed] = estimate.estimate(replaying, ["cpu-2core"])
    seconds = replayed.seconds["cpu-2core"]
    restore = estimate.run_overhead(device, cfg, "tiny", TINY_PARAMS, 0)["copies"]  # the base, again
    digest = 4 * TINY_PARAMS / device["memory_bandwidth"]  # the fp32 state read once a new best epoch
    assert 0 < restore < around and 0 < digest < restore
    assert seconds["expected_replays"] == pytest.approx(10 * (restore + 3 * digest) + 3 * epoch + evaluation)
    replays_max = 10 * (restore + 6 * digest) + 5 * epoch + evaluation
    fixed = 2 * epoch + 10 * around + 10 * around + row.jobs * start
    assert seconds["expected"] == pytest.approx(fixed + 5 * (epoch + evaluation) + seconds["expected_replays"])
    assert seconds["max"] == pytest.approx(fixed + 6 * (epoch + evaluation) + replays_max)


def test_texts_side_by_side_share_a_steps_fixed_cost_only_where_measured_to(in_tmp):
    """train.parallel_texts divides a step's fixed cost among the texts on the GPU entries (a
    placeholder) and not on the CPU, where the demo's model side by side measured no faster."""
    cfg = demo_like(in_tmp)
    batched = config_checks.validate({**cfg, "train": {**cfg["train"], "parallel_texts": 4}})
    for name, shared in (("h100", True), ("cpu-2core", False)):
        device = estimate.COST_MODEL["devices"][name]
        one, four = (estimate.step_seconds(device, c, "tiny", TINY_PARAMS, 16) for c in (cfg, batched))
        assert one - four == pytest.approx(device["step_overhead_s"] * 3 / 4 if shared else 0), name


def test_each_optimizer_setting_adds_its_budgets_runs(in_tmp):
    cfg = demo_like(in_tmp)
    [alone] = estimate.estimate(cfg, ["cpu-2core"])
    cfg = config_checks.validate({**cfg, "optimizers": {"sgd": {"optimizer": "sgd", "lr": 1e-2, "budgets": [2]}}})
    [row] = estimate.estimate(cfg, ["cpu-2core"])
    shards = alone.jobs // 2
    assert row.jobs == alone.jobs + shards  # budget 2 runs twice, es once
    assert row.steps == alone.steps  # per (text, budget, setting)
    assert row.store_bytes - alone.store_bytes == pytest.approx(
        10 * alone.run_bytes["2"] + shards * (alone.store_bytes - 10 * sum(alone.run_bytes.values())) / alone.jobs
    )
    device = estimate.COST_MODEL["devices"]["cpu-2core"]
    start = device["job_start_s"] + TINY_PARAMS * 4 / device["load_bandwidth"]
    seconds = row.seconds["cpu-2core"]
    assert seconds["expected_steps"] == pytest.approx(
        alone.seconds["cpu-2core"]["expected_steps"] + 2 * seconds["step"] * row.chunks_per_text * 10
    )
    assert seconds["expected_starts"] == pytest.approx(row.jobs * start)


def test_sketch_bytes_match_a_store_the_training_job_writes(tmp_path):
    """The disk figure of a sketch job against the store train.JobRecords writes for the same model."""
    from paramdelta import store

    config = models.tiny_config("gpt-neox", 300, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    model = models.build_model(config, 0)
    layers = models.model_layers(model)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    listing = [
        {
            "name": layer.name,
            "group": layer.group,
            "block": layer.block,
            "numel": layer.numel,
            "params": list(layer.params),
        }
        for layer in layers
    ]
    texts = [f"{i:016x}" for i in range(10)]
    attrs = {
        "kind": "train",
        "policy": "sketch",
        "model": "tiny",
        "budget": "3",
        "ks": [1, 2],
        "layers": listing,
        "texts": texts,
        "train": {"lr": 3e-5, "max_epochs": 100, "patience": 20},
    }
    with store.atomic_group(tmp_path / "job.zarr", attrs) as root:
        records = train.JobRecords(
            root, policy="sketch", layers=layers, base=base, ks=[1, 2], snapshot_dtype=torch.float32
        )
        for text_id in texts:
            after = {n: t + 1e-4 * torch.randn_like(t) for n, t in base.items()}
            records.add(
                train.TextRun(
                    text_id=text_id,
                    n_tokens=40,
                    n_chunks=1,
                    budget="3",
                    losses=[3.1, 2.7, 2.5],
                    lrs=[3e-5, 2e-5, 1e-5],
                    best_epoch=3,
                    seconds=0.25,
                    after=after,
                ),
                "ab" * 32,
            )
        records.close()
    files = [p for p in (tmp_path / "job.zarr").rglob("*") if p.is_file()]
    written = sum(p.stat().st_size for p in files)
    cfg = {"snapshots": {"store": "sketch", "dtype": "float32"}, "features": {"k": [1, 2]}}
    info = estimate.ModelInfo(
        TINY_PARAMS, len(layers), sum(len(layer.params) for layer in layers), 64, len(json.dumps(listing)), "test"
    )
    assert len(files) == estimate.store_files(cfg, info, 10, 1)
    assert 10 * estimate.run_bytes(cfg, info, 3) + estimate.job_bytes(cfg, info) == pytest.approx(written, rel=0.1)


def test_local_model_and_data_set_delta_policy(in_tmp, tiny_model_dir, saved_tokenizer, sample_texts):
    path = in_tmp / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(sample_texts)))
    cfg = config_checks.validate(
        {
            "datasets": {"mine": {"path": str(path)}},
            "models": {"tiny": {"path": str(tiny_model_dir), "dtype": "bfloat16"}},
            "budgets": [3],
            "train": {"max_length": 8},
            "snapshots": {"store": "delta", "dtype": "bfloat16"},
        }
    )
    notes = []
    [row] = estimate.estimate(cfg, ["cpu-2core"], notes=notes)
    tokens = [len(saved_tokenizer(t)["input_ids"]) for t in sample_texts]
    assert row.tokens_per_text == pytest.approx(sum(tokens) / len(tokens))
    assert row.steps["3"] == pytest.approx(3 * sum(math.ceil(n / 8) for n in tokens) / len(tokens))
    params = sum(p.numel() for p in models.load_causal_lm(str(tiny_model_dir)).parameters())
    assert row.params == params
    tensors = estimate.model_info(cfg, "tiny").tensors
    # A delta: every parameter in bfloat16 (2 bytes), compressed ~1x, with a zarr.json per tensor
    # in the text's own two groups; and the text's record and loss and lr rows.
    assert row.run_bytes["3"] == (
        estimate.RECORD_BYTES + 8 * 2 * 3 + params * 2 + tensors * estimate.ARRAY_OVERHEAD + 2 * estimate.GROUP_OVERHEAD
    )
    assert row.base_bytes == params * 2 + tensors * estimate.ARRAY_OVERHEAD + estimate.JOB_OVERHEAD
    assert ("tokens", "the tokenizer of the local directory", "tiny") in notes
    assert ("parameters", "config.json of the local directory", "tiny") in notes


def test_fetched_hub_model_is_read_from_its_snapshot(in_tmp, tiny_model_dir, saved_tokenizer, sample_texts):
    """A hub model fetched before (its manifest under data/hub/): config.json and tokenizer of the snapshot."""
    from paramdelta import hub

    hub.write_json(
        {"repo_id": "someone/tiny", "revision": None, "commit": "0" * 40, "path": str(tiny_model_dir)},
        hub.model_manifest_path("someone/tiny"),
    )
    path = in_tmp / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(sample_texts)))
    cfg = config_checks.validate(
        {
            "datasets": {"mine": {"path": str(path)}},
            "models": {"tiny": {"path": "someone/tiny"}},
            "budgets": [1],
            "texts_per_job": 2,
        }
    )
    notes = []
    [row] = estimate.estimate(cfg, ["h100"], notes=notes, params=["7e9"])  # a bare --params: only for unknown models
    assert row.tokens_per_text == pytest.approx(sum(len(saved_tokenizer(t)["input_ids"]) for t in sample_texts) / 4)
    assert ("parameters", "config.json of the fetched snapshot", "tiny") in notes
    assert ("tokens", "the tokenizer of the fetched snapshot", "tiny") in notes
    assert row.params < 1e6 and row.seconds["h100"]["units"] == 1  # gpus: 0 counts as one GPU


def hub_config(tmp_path) -> str:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        json.dumps(
            {
                "datasets": {"wiki": {"hf": "someone/absent", "split": "test", "text": "input"}},
                "models": {
                    "pythia-6.9b": {
                        "path": "EleutherAI/pythia-6.9b",
                        "dtype": "float16",
                        "gpus": 2,
                        "engine": "deepspeed",
                    }
                },
                "budgets": [5, "es"],
                "train": {"max_epochs": 100, "patience": 20, "precision": "bf16", "device": "cuda"},
            }
        )
    )
    return str(path)


def test_missing_data_set_is_a_message_not_a_traceback(in_tmp, capsys):
    configfile = hub_config(in_tmp)
    with pytest.raises(SystemExit) as exit_info:
        estimate.main(["--configfile", configfile])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "data set wiki (someone/absent, split test) is not fetched" in err
    assert "--texts N" in err and "--words-per-text" in err and "python -m paramdelta.hub fetch" in err

    # Given its size, the estimate runs offline: the model from the built-in table, ~1.4 tokens a word.
    estimate.main(["--configfile", configfile, "--texts", "wiki=50", "--words-per-text", "10", "--es-epochs", "40"])
    out = capsys.readouterr().out
    assert "6.86 B" in out and "Time on h100" in out
    assert "Parameters from the built-in table, not fetched (pythia-6.9b)." in out
    assert "~1.4 tokens a word x 10 words" in out and "Texts from --texts, data set not fetched (wiki)." in out
    assert "placeholders" in out


def test_unknown_model_needs_params(in_tmp, capsys):
    path = in_tmp / "texts.jsonl"
    path.write_text('{"text": "one text", "label": 1}\n{"text": "another text", "label": 0}\n')
    configfile = in_tmp / "c.yaml"
    configfile.write_text(
        json.dumps({"datasets": {"mine": {"path": str(path)}}, "models": {"big": {"path": "someone/unknown-model"}}})
    )
    with pytest.raises(SystemExit):
        estimate.main(["--configfile", str(configfile)])
    err = capsys.readouterr().err
    assert "someone/unknown-model is not fetched" in err and "--params" in err and "Traceback" not in err
    estimate.main(["--configfile", str(configfile), "--params", "big=1.3e9"])
    out = capsys.readouterr().out
    assert "1.3 B" in out and "--params" in out


@pytest.mark.parametrize("repo_id", list(estimate.KNOWN_MODELS))
def test_built_in_models_have_their_published_sizes(repo_id):
    from transformers import AutoConfig

    kind, fields, params = estimate.KNOWN_MODELS[repo_id]
    assert estimate._info_of_config(AutoConfig.for_model(kind, **fields), "table").params == params


def test_traffic_counts():
    # torch engine, AdamW with clipping: forward/backward 12, clipping 12, AdamW 28 bytes a parameter.
    assert estimate.traffic("torch", "bf16", "adamw", 0.0, 1.0, 1, 0) == {
        "forward_backward": 12,
        "optimizer": 40,
        "link": 0,
        "host": 0,
        "pcie": 0,
    }
    assert sum(estimate.traffic("torch", "fp32", "adamw", 0.0, 1.0, 1, 0).values()) == 52
    assert estimate.traffic("torch", "fp32", "sgd", 0.0, 0.0, 1, 0)["optimizer"] == 12
    # DeepSpeed ZeRO-2 over 2 GPUs in bf16: 6 + (2 + 48 / 2 + 2), and 2 bytes a parameter over the link.
    assert estimate.traffic("deepspeed", "bf16", "adamw", 0.0, 1.0, 2, 2) == {
        "forward_backward": 6,
        "optimizer": 28,
        "link": 2,
        "host": 0,
        "pcie": 0,
    }
    # ZeRO-Offload on one GPU in bf16: the GPU reads the gradients and writes the weights (2 + 2);
    # 4 + 2 bytes cross PCIe; the host writes the fp32 gradients, clips and steps (4 + 12 + 28).
    assert estimate.traffic("deepspeed", "bf16", "adamw", 0.0, 1.0, 1, 2, offload=True) == {
        "forward_backward": 6,
        "optimizer": 4,
        "link": 0,
        "host": 44,
        "pcie": 6,
    }


def test_chunks_and_early_stopping_epochs():
    assert estimate.chunk_sizes(1, 8) == []  # nothing to predict: no step
    assert estimate.chunk_sizes(17, 8) == [6, 6, 5]  # as train.chunk balances them
    assert [c.shape[1] for c in train.chunk(list(range(17)), 8)] == [6, 6, 5]
    cfg = {"train": {"max_epochs": 100, "patience": 20}}
    assert estimate.es_epochs(cfg) == (89, 100)
    assert estimate.es_epochs(cfg, 30) == (30, 100)
    # Early stopping cannot stop before patience + 1 epochs.
    assert estimate.es_epochs({"train": {"max_epochs": 10, "patience": 20}}) == (10, 10)
    assert estimate.es_epochs({"train": {"max_epochs": 100, "patience": 95}}) == (96, 100)


def test_zero_offload_steps_the_optimizer_on_the_host(in_tmp):
    """A DeepSpeed config that offloads the optimizer (ZeRO-Offload): the step's update moves from
    the GPU's memory to the host's, and the shard's gradients and weights cross PCIe."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    steps = {}
    for name in ("deepspeed_zero2.json", "deepspeed_zero2_offload.json"):
        train_section = {"engine": "deepspeed", "deepspeed_config": os.path.join(repo, "config", name)}
        cfg = demo_like(in_tmp)
        cfg = config_checks.validate({**cfg, "train": {**cfg["train"], **train_section, "precision": "bf16"}})
        steps[name] = estimate.step_seconds(estimate.COST_MODEL["devices"]["h100"], cfg, "tiny", 7e9, 40)
    device = estimate.COST_MODEL["devices"]["h100"]
    # One GPU: the update's 2 + 4 + 12 + 28 + 2 bytes in HBM become 2 + 2 in HBM, 44 on the host, 6 over PCIe.
    moved = -44 / device["memory_bandwidth"] + 44 / device["host_optimizer_bandwidth"] + 6 / device["host_bandwidth"]
    offloaded, on_gpu = steps["deepspeed_zero2_offload.json"], steps["deepspeed_zero2.json"]
    assert offloaded - on_gpu == pytest.approx(7e9 * moved * device["efficiency"])
    assert offloaded > 10 * on_gpu  # the host's memory, not HBM, is what a 7B step waits for


def test_the_base_is_restored_from_where_the_engines_keep_it(in_tmp, monkeypatch, tiny_model_dir):
    """The estimate restores the base from the device or over the host link as the engines
    decide at their start: the torch engine keeps it on the device where gradients, moments and
    the base fit beside the weights in nine tenths of it, DeepSpeed where it fits beside each
    rank's module, master shard and what its first step allocates."""
    cfg = demo_like(in_tmp)
    h200 = estimate.COST_MODEL["devices"]["h200"]

    def restore(device, cfg, params):
        return estimate.run_overhead(device, cfg, "tiny", params, 1)["copies"]

    # The torch engine: 7B in bf16 on an H200 (112 GB of training state beside the 28 GB base
    # leaves no room) from host memory, 1.4B from the device.
    assert restore(h200, cfg, 7e9) == pytest.approx(4 * 7e9 / h200["host_bandwidth"])
    assert restore(h200, cfg, 1.4e9) == pytest.approx(4 * 1.4e9 / h200["copy_bandwidth"])
    # The same line as train.TorchEngine's, tried on a real engine on both sides of it (its base
    # all fp32, as the estimate counts an fp32 model's: a random initialisation's LayerNorm ones
    # and zeros would be kept in 16 bits). Under bf16 autocast the weights' 16-bit copies (half
    # the fp32 weights) need room too.
    monkeypatch.setattr(train, "base_dtype", lambda tensor: torch.float32)
    model = models.load_causal_lm(str(tiny_model_dir))
    fp32 = 4 * sum(p.numel() for p in model.parameters())
    for precision, copies in (("fp32", 0.0), ("bf16", 0.5)):
        tried = config_checks.validate({**cfg, "train": {**cfg["train"], "precision": precision}})
        line = fp32 * (5.0 + copies) / 0.9  # 0.9 M - weights = (4 + copies) x fp32
        for memory in (line - 1e-3, line + 1e-3):
            device = {**h200, "memory": memory}
            monkeypatch.setattr(train, "_spare_bytes", lambda _, memory=memory: 0.9 * memory - fp32)
            engine = train.TorchEngine(
                models.load_causal_lm(str(tiny_model_dir)), train.Settings(precision=precision), torch.device("cpu")
            )
            local = restore(device, tried, fp32 / 4) == pytest.approx(fp32 / h200["copy_bandwidth"])
            assert local is engine.base_on_device is (memory > line), (precision, memory)
    # DeepSpeed ZeRO-2 in bf16 on one H200: 1.4B on the device (2 + 4 bytes a parameter there, 4 + 12
    # to come), written twice a restore; 7B from host memory, once over the link and then from the
    # device's copy into the master.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    zero2 = {"engine": "deepspeed", "deepspeed_config": os.path.join(repo, "config", "deepspeed_zero2.json")}
    cfg = config_checks.validate({**cfg, "train": {**cfg["train"], **zero2, "precision": "bf16"}})
    assert restore(h200, cfg, 1.4e9) == pytest.approx(2 * 4 * 1.4e9 / h200["copy_bandwidth"])
    assert restore(h200, cfg, 7e9) == pytest.approx(4 * 7e9 / h200["host_bandwidth"] + 4 * 7e9 / h200["copy_bandwidth"])


def test_gpu_memory_of_texts_side_by_side():
    """Texts side by side each hold their own weights, gradients, moments and 16-bit weight copies,
    under early stopping a copy of their best state, and share the model's weights as their base:
    Pythia-1.4B three at a time in bf16 does not fit an 80 GB GPU with early stopping."""
    one = estimate.gpu_bytes("torch", "bf16", "adamw", 0.0, 1, 0)
    assert one == 4 + 4 + 8 + 2
    assert estimate.gpu_bytes("torch", "bf16", "adamw", 0.0, 1, 0, side_by_side=3) == 3 * one + 4
    with_es = estimate.gpu_bytes("torch", "bf16", "adamw", 0.0, 1, 0, side_by_side=3, best_copies=True)
    assert with_es == 3 * (one + 4) + 4
    assert with_es * 1.4e9 > estimate.COST_MODEL["devices"]["h100"]["memory"]


def test_host_memory_of_a_job_against_its_mem_mb(in_tmp, capsys):
    """The peak host memory of a training job, counted as the engines hold it (bytes a parameter,
    fp32 = 4), and the estimate's warning where a model's mem_mb is below it."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = demo_like(in_tmp)
    h100, h200, cpu = (estimate.COST_MODEL["devices"][d] for d in ("h100", "h200", "cpu-2core"))
    gib = float(1 << 30)

    def host(device, cfg, params, slug="tiny"):
        return estimate.host_memory(device, cfg, slug, params) - device["process_host_bytes"] * (
            max(1, cfg["models"][slug]["gpus"]) if (cfg["train"]["engine"] == "deepspeed") else 1
        )

    # torch engine: 1.4B keeps its base on an H100, so only the fp32 load is on the host; 7B's base
    # stays on the host (page-locked, in 1 GiB slabs); delta adds the state taken for the store.
    assert host(h100, cfg, 1.4e9) == 4 * 1.4e9
    assert host(h100, cfg, 7e9) == 4 * 7e9 + gib
    delta = config_checks.validate({**cfg, "snapshots": {**cfg["snapshots"], "store": "delta"}})
    assert host(h100, delta, 7e9) == 8 * 7e9 + 2 * gib  # the state page-locked in slabs too
    # From a 16-bit checkpoint the base is kept in 16 bits (train.base_dtype): half of it on the
    # host, and half the bytes of every restore from there.
    half = config_checks.validate({**cfg, "models": {"tiny": {**cfg["models"]["tiny"], "dtype": "float16"}}})
    assert estimate.base_bytes(half, "tiny", 7e9) == 2 * 7e9
    assert host(h100, half, 7e9) == 4 * 7e9  # the fp32 load is the peak
    assert host(h100, {**half, "snapshots": delta["snapshots"]}, 7e9) == 6 * 7e9 + 2 * gib
    restore = estimate.run_overhead(h100, half, "tiny", 7e9, 1)["copies"]
    assert restore == pytest.approx(2 * 7e9 / h100["host_bandwidth"])
    # On a CPU the host is the device: weights, gradients, AdamW's moments, the base and early
    # stopping's copy of the best state, which for delta is the state the store takes.
    assert host(cpu, cfg, 1e6) == 24e6
    assert host(cpu, delta, 1e6) == 24e6
    fixed = config_checks.validate({**cfg, "budgets": [2]})
    assert host(cpu, fixed, 1e6) == 20e6
    # Three texts side by side: each its weights, gradients, moments and best copy; the model's
    # weights are their base.
    three = config_checks.validate({**cfg, "train": {**cfg["train"], "parallel_texts": 3}})
    assert host(cpu, three, 1e6) == 3 * 20e6 + 4e6
    # DeepSpeed ZeRO-2 over 2 GPUs: each rank holds its fp32 model and the base copied from it at once.
    zero2 = {"engine": "deepspeed", "deepspeed_config": os.path.join(repo, "config", "deepspeed_zero2.json")}
    two = config_checks.validate(
        {
            **cfg,
            "models": {"tiny": {**cfg["models"]["tiny"], "gpus": 2}},
            "train": {**cfg["train"], **zero2, "precision": "bf16"},
        }
    )
    assert host(h100, two, 7e9) == 2 * 8 * 7e9
    assert estimate.host_memory(h100, two, "tiny", 7e9) == 2 * 8 * 7e9 + 2 * h100["process_host_bytes"]
    # ZeRO-Offload on one H100: the fp32 master, its gradient and a 16-bit copy page-locked (each
    # rounded up to a power of two by torch's pinned allocator), a gradient buffer (a slab) and the
    # moments on the host, at their peak while DeepSpeed makes the master as a pageable copy beside
    # the base (4 + 4: the demo-like model is fp32); 7B's base then moves to the GPU beside the
    # bf16 module, 13B's stays on the host.
    offload = {"engine": "deepspeed", "deepspeed_config": os.path.join(repo, "config", "deepspeed_zero2_offload.json")}
    one = config_checks.validate({**cfg, "train": {**cfg["train"], **offload, "precision": "bf16"}})
    assert estimate.base_on_device(h100, one, "tiny", 7e9) is True
    pinned = 2 * 2.0**35 + 2.0**34  # 28 GB twice and 14 GB, rounded up
    assert host(h100, one, 7e9) == 8 * 7e9 + pinned + 8 * 7e9 + gib
    assert estimate.base_on_device(h100, one, "tiny", 13e9) is False
    assert host(h100, one, 13e9) == 8 * 13e9 + 2 * 2.0**36 + 2.0**35 + 8 * 13e9 + gib

    # The estimate says which jobs SLURM would kill, and what mem_mb they need.
    path = in_tmp / "texts.jsonl"
    path.write_text('{"text": "one text", "label": 1}\n{"text": "another text", "label": 0}\n')
    configfile = in_tmp / "c.yaml"
    models_ = {"small": {"path": "someone/small", "mem_mb": 20000}, "big": {"path": "someone/big", "mem_mb": 20000}}
    configfile.write_text(json.dumps({"datasets": {"mine": {"path": str(path)}}, "models": models_}))
    estimate.main(["--configfile", str(configfile), "--params", "small=1.4e9", "--params", "big=7e9", "--gpu", "h100"])
    out = capsys.readouterr().out
    need = math.ceil((4 * 7e9 + gib + h100["process_host_bytes"]) / (1 << 20))
    assert f"big: mem_mb 20,000, needs about {need:,}" in out and "small: mem_mb" not in out
    assert "(over)" in out and "raise models.<name>.mem_mb" in out


def test_the_h200_overlay_fits_one_141_gb_gpu_a_job(in_tmp, capsys):
    """config/wikimia_h200.yaml merged after config/wikimia.yaml: the torch engine on one GPU a
    job, which fits a 141 GB GPU (and is marked over on an 80 GB one), with host memory to spare
    in its mem_mb; the exact base fits beside the training state of the two smaller models, not
    beside that of Pythia-6.9B and Llama-2-7B (a 16-bit base of 13.5-13.7 GB where 13.4 GB or
    less is left); by the estimate it costs fewer GPU-hours than ZeRO-2 over two GPUs."""
    from paramdelta import hub

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wikimia, overlay = (os.path.join(repo, "config", name) for name in ("wikimia.yaml", "wikimia_h200.yaml"))
    merged = hub.load_config([wikimia, overlay])
    assert merged["train"]["engine"] == "torch" and merged["train"]["precision"] == "bf16"
    assert {spec["gpus"] for spec in merged["models"].values()} == {1}
    h200, h100 = (estimate.COST_MODEL["devices"][d] for d in ("h200", "h100"))
    for slug in merged["models"]:
        params = estimate.model_info(merged, slug).params
        assert h100["memory"] < estimate.memory_per_gpu(merged, slug, params) < 0.9 * h200["memory"]
        assert estimate.base_on_device(h200, merged, slug, params) is (slug in ("gpt-j-6b", "opt-6.7b")), slug
        assert estimate.host_memory(h200, merged, slug, params) < estimate.mem_mb_bytes(merged, slug)
    texts = ["--texts", "776", "--words-per-text", "32", "--gpu", "h200"]
    hours = {}
    for files in ([wikimia], [wikimia, overlay]):
        estimate.main([arg for path in files for arg in ("--configfile", path)] + texts)
        out = capsys.readouterr().out
        assert "(over)" not in out
        total = next(line for line in out.splitlines() if line.startswith("total") and "/" in line)
        hours[len(files)] = float(total.split()[-3])
    assert hours[2] < hours[1]


def test_early_stopping_replays_where_keeping_would_cross_the_host_link(in_tmp):
    """train.best_state auto, as train.replays decides it: replay on a GPU where each new best
    would bring the base or the state across the host link (config/wikimia.yaml on an H100: the
    base in host memory, ZeRO-2 over two GPUs), keep where the statistics are taken on the
    device (the H200 overlay's two smaller models) or on a CPU; the setting by hand either way."""
    from paramdelta import hub

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wikimia, overlay = (os.path.join(repo, "config", name) for name in ("wikimia.yaml", "wikimia_h200.yaml"))
    devices = estimate.COST_MODEL["devices"]
    config = hub.load_config([wikimia])
    merged = hub.load_config([wikimia, overlay])
    for slug in config["models"]:
        params = estimate.model_info(config, slug).params
        assert estimate.replays(devices["h100"], config, slug, params)
        assert not estimate.base_on_device(devices["h100"], config, slug, params)
        assert estimate.replays(devices["h200"], config, slug, params)  # two ranks gather the master
        assert not estimate.replays(devices["cpu-2core"], config, slug, params)
        # The H200 overlay summarises where the base is, for the models whose base fits beside them.
        local = estimate.base_on_device(devices["h200"], merged, slug, params)
        assert estimate.replays(devices["h200"], merged, slug, params) is not local
        kept = {**config, "train": {**config["train"], "best_state": "keep"}}
        assert not estimate.replays(devices["h100"], kept, slug, params)
        full = {**merged, "snapshots": {**merged["snapshots"], "store": "delta"}}
        assert estimate.replays(devices["h200"], full, slug, params)  # no room for a copy of the state
    cfg = demo_like(in_tmp)
    assert not estimate.replays(devices["h100"], cfg, "tiny", TINY_PARAMS)  # a copy fits beside it
    forced = {**cfg, "train": {**cfg["train"], "best_state": "replay"}}
    assert estimate.replays(devices["cpu-2core"], forced, "tiny", TINY_PARAMS)


def test_a_job_longer_than_its_runtime_is_marked(in_tmp, capsys, monkeypatch):
    """The longest job against models.<name>.runtime: marked, with the minutes it needs, since
    SLURM would stop it at its time limit."""
    import yaml

    cfg = demo_like(in_tmp)
    cfg["models"]["tiny"]["runtime"] = 1
    path = in_tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setitem(estimate.COST_MODEL["devices"]["cpu-2core"], "job_start_s", 61.0)  # a start over 1 minute
    estimate.main(["--configfile", str(path), "--gpu", "cpu-2core"])
    out = capsys.readouterr().out
    assert "(over)" in out and "longest job over the model's runtime (tiny: runtime 1 min, needs about 2)" in out
    cfg["models"]["tiny"]["runtime"] = 5
    path.write_text(yaml.safe_dump(cfg))
    estimate.main(["--configfile", str(path), "--gpu", "cpu-2core"])
    assert "(over)" not in capsys.readouterr().out
