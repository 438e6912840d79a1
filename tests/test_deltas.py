"""Tests for paramdelta.deltas: layer statistics against brute force, and reading training stores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from paramdelta import data, deltas, models, store, train
from paramdelta.models import Layer

pytestmark = pytest.mark.usefixtures("single_thread")

KS = (1, 5, 50)
CPU = torch.device("cpu")


# ---------------------------------------------------------------- brute force


def _brute_force(layers, before, after, ks):
    """layer_l2, layer_sq, layer_topk_l2, tensor_l2, layer_dot, layer_base_sq with numpy, the obvious way."""
    layer_l2, layer_sq, topk, tensor_l2, dot, base_sq = [], [], [], [], [], []
    for layer in layers:
        pieces, bases = [], []
        for name in layer.params:
            delta = (after[name].numpy() - before[name].numpy()).astype(np.float64).ravel()
            tensor_l2.append(math.sqrt(np.sum(delta**2)))
            pieces.append(delta)
            bases.append(before[name].numpy().astype(np.float64).ravel())
        flat = np.concatenate(pieces)
        base = np.concatenate(bases)
        dot.append(np.sum(flat * base))
        base_sq.append(np.sum(base**2))
        assert flat.size == layer.numel
        layer_sq.append(np.sum(flat**2))
        layer_l2.append(math.sqrt(layer_sq[-1]))
        ordered = np.sort(np.abs(flat))[::-1]
        topk.append([math.sqrt(np.sum(ordered[: max(1, math.ceil(k / 100 * flat.size))] ** 2)) for k in ks])
    return {
        "layer_l2": np.array(layer_l2),
        "layer_sq": np.array(layer_sq),
        "layer_topk_l2": np.array(topk),
        "tensor_l2": np.array(tensor_l2),
        "layer_dot": np.array(dot),
        "layer_base_sq": np.array(base_sq),
    }


def _random_after(model, seed: int) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(seed)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    after = {}
    for i, (name, tensor) in enumerate(before.items()):
        scale = 10.0 ** -(2 + i % 5)  # layers change by very different amounts
        noise = torch.randn(tensor.shape, generator=generator) * scale
        noise[torch.rand(tensor.shape, generator=generator) < 0.3] = 0.0  # many entries do not move
        after[name] = tensor + noise
    return before, after


def test_layer_stats_match_brute_force(arch_model):
    layers = models.model_layers(arch_model)
    before, after = _random_after(arch_model, seed=1)
    stats = deltas.layer_stats(layers, before, after, KS)
    expected = _brute_force(layers, before, after, KS)
    assert set(stats) == set(deltas.STAT_ARRAYS)
    assert stats["layer_topk_l2"].shape == (len(layers), len(KS))
    assert len(stats["tensor_l2"]) == len(dict(arch_model.named_parameters()))  # every tensor, once
    for name in deltas.STAT_ARRAYS:
        assert stats[name].dtype == np.float64
        np.testing.assert_allclose(stats[name], expected[name], rtol=1e-10, atol=0, err_msg=name)
    # Top-K% grows with K and the top 100% would be the whole layer.
    assert np.all(np.diff(stats["layer_topk_l2"], axis=1) >= 0)
    assert np.all(stats["layer_topk_l2"][:, -1] <= stats["layer_l2"] * (1 + 1e-12))
    np.testing.assert_allclose(
        deltas.layer_stats(layers, before, after, (100,))["layer_topk_l2"][:, 0], stats["layer_l2"], rtol=1e-12
    )

    precomputed = {name: after[name] - before[name] for name in after}
    as_delta = deltas.layer_stats(layers, before, precomputed, KS, is_delta=True)
    for name in deltas.STAT_ARRAYS:
        np.testing.assert_array_equal(as_delta[name], stats[name], err_msg=name)
    # Without its base a delta has no <base, delta> or ||base||^2, and says so with NaN.
    alone = deltas.layer_stats(layers, None, precomputed, KS, is_delta=True)
    for name in deltas.STAT_ARRAYS:
        if name in deltas.BASE_ARRAYS:
            assert np.isnan(alone[name]).all(), name
        else:
            np.testing.assert_array_equal(alone[name], stats[name], err_msg=name)


def test_device_path_matches_the_numpy_path(arch_model, monkeypatch):
    """What a GPU runs (torch where the tensors are: torch.topk, float64 sums, one transfer at the
    end), run here on CPU tensors, against the numpy path the CPU runs: layer_stats with and
    without a base and with ||base||^2 given, base_sq_per_layer and layer_l2, one copy and several."""
    layers = models.model_layers(arch_model)
    before, after = _random_after(arch_model, seed=9)
    delta = {name: after[name] - before[name] for name in after}
    stacked = {name: torch.stack([after[name], before[name] + 2 * delta[name]]) for name in after}

    def everything() -> dict[str, np.ndarray]:
        base_sq = deltas.base_sq_per_layer(layers, before)
        out = {"base_sq_per_layer": base_sq, "layer_l2": deltas.layer_l2(layers, before, after)}
        out["layer_l2 stacked"] = deltas.layer_l2(layers, before, stacked, stacked=True)
        for name, value in deltas.layer_stats(layers, before, after, KS).items():
            out[name] = value
        for name, value in deltas.layer_stats(layers, None, delta, KS, is_delta=True).items():
            out[f"delta alone {name}"] = value
        for name, value in deltas.layer_stats(layers, before, iter(after.items()), KS, base_sq=base_sq).items():
            out[f"streamed {name}"] = value
        return out

    numpy_path = everything()
    monkeypatch.setattr(deltas, "NUMPY_ON_CPU", False)
    torch_path = everything()
    assert numpy_path.keys() == torch_path.keys()
    for name in numpy_path:
        assert numpy_path[name].shape == torch_path[name].shape, name
        np.testing.assert_allclose(torch_path[name], numpy_path[name], rtol=1e-10, atol=0, err_msg=name)


def test_arch_fixture_covers_every_architecture():
    assert {"gpt-neox", "llama", "gptj", "opt"} == set(models.ARCHITECTURES)  # conftest.arch_model's list


def test_layer_l2_is_layer_stats_l2_one_copy_or_many(arch_model):
    layers = models.model_layers(arch_model)
    before, after = _random_after(arch_model, seed=2)
    expected = deltas.layer_stats(layers, before, after, ())["layer_l2"]
    # The same float64 sums of the same float32 differences, in other blocks: equal to rounding.
    np.testing.assert_allclose(deltas.layer_l2(layers, before, after), expected, rtol=1e-12)
    _, other = _random_after(arch_model, seed=3)
    stacked = {name: torch.stack([after[name], other[name], before[name]]) for name in after}
    rows = deltas.layer_l2(layers, before, stacked.items(), stacked=True)
    assert rows.shape == (3, len(layers))
    np.testing.assert_allclose(rows[0], expected, rtol=1e-12)
    np.testing.assert_allclose(rows[1], deltas.layer_stats(layers, before, other, ())["layer_l2"], rtol=1e-12)
    assert (rows[2] == 0).all()


def test_layer_stats_by_hand():
    # One layer: weight changes (3, 4, 0) and bias (0,); a second layer unchanged.
    layers = [
        Layer(index=0, name="a", group="other", block=-1, params=("a.weight", "a.bias"), numel=4),
        Layer(index=1, name="b", group="other", block=-1, params=("b.weight",), numel=2),
    ]
    before = {"a.weight": torch.zeros(3), "a.bias": torch.ones(1), "b.weight": torch.full((2,), 7.0)}
    after = {"a.weight": torch.tensor([3.0, -4.0, 0.0]), "a.bias": torch.ones(1), "b.weight": torch.full((2,), 7.0)}
    stats = deltas.layer_stats(layers, before, after, (1, 25, 50, 100))
    np.testing.assert_array_equal(stats["layer_l2"], [5.0, 0.0])
    np.testing.assert_array_equal(stats["layer_sq"], [25.0, 0.0])
    np.testing.assert_array_equal(stats["tensor_l2"], [5.0, 0.0, 0.0])
    # numel 4: K=1 and K=25 -> 1 entry (|-4|), K=50 -> 2 entries, K=100 -> all.
    np.testing.assert_array_equal(stats["layer_topk_l2"][0], [4.0, 4.0, 5.0, 5.0])
    np.testing.assert_array_equal(stats["layer_topk_l2"][1], [0.0, 0.0, 0.0, 0.0])


def test_layer_stats_with_no_ks():
    layers = [Layer(index=0, name="a", group="other", block=-1, params=("a.weight",), numel=2)]
    stats = deltas.layer_stats(layers, {"a.weight": torch.zeros(2)}, {"a.weight": torch.ones(2)}, ())
    assert stats["layer_topk_l2"].shape == (1, 0)
    np.testing.assert_allclose(stats["layer_l2"], [math.sqrt(2)])


def test_layer_stats_accepts_bf16_snapshots():
    layers = [Layer(index=0, name="a", group="other", block=-1, params=("a.weight",), numel=3)]
    before = {"a.weight": torch.tensor([1.0, 2.0, 3.0])}
    after = {"a.weight": torch.tensor([1.5, 2.0, 1.0], dtype=torch.bfloat16)}
    stats = deltas.layer_stats(layers, before, after, (50,))
    np.testing.assert_allclose(stats["layer_l2"], [math.sqrt(0.25 + 4.0)])
    np.testing.assert_allclose(stats["layer_topk_l2"], [[math.sqrt(4.25)]])  # ceil(1.5) = 2 entries


@pytest.mark.parametrize(
    "values",
    [
        np.arange(-50, 51, dtype=np.float32),  # ties in magnitude (-k and k)
        np.zeros(7, dtype=np.float32),
        np.random.default_rng(3).standard_normal(10_001).astype(np.float32),
        # Partitioned as integers: signed zeros, subnormals and the largest floats must order as floats.
        np.array([-0.0, 0.0, 1e-45, -1e-45, -2e-40, 1e-38, -3e38, 3e38, 1.0, -1.0, 2.5, -0.0], dtype=np.float32),
        np.random.default_rng(4).standard_normal(1_001) * np.logspace(-150, 150, 1_001),
    ],
    ids=["ties", "zeros", "random", "extremes", "float64"],
)
def test_topk_by_partition_matches_a_full_sort(values):
    ks = (50, 1, 100, 2, 50, 33)  # unordered, repeated, and the whole layer
    counts = deltas.topk_counts(values.size, ks)
    largest = np.sort(np.abs(values.astype(np.float64)))[::-1]
    expected = [math.sqrt(np.sum(largest[:count] ** 2)) for count in counts]
    np.testing.assert_allclose(deltas._topk_l2(values.copy(), counts), expected, rtol=1e-12, atol=0)
    # The device's selections (no sort), run here on the CPU.
    magnitudes = torch.from_numpy(np.abs(values))
    np.testing.assert_allclose(deltas._topk_l2_torch(magnitudes, counts).numpy(), expected, rtol=1e-12, atol=0)
    assert deltas._topk_l2_torch(magnitudes, []).shape == (0,)


def test_topk_counts():
    assert deltas.topk_counts(1, [1, 5, 50]) == [1, 1, 1]  # never zero entries
    assert deltas.topk_counts(3, [1, 34, 50, 100]) == [1, 2, 2, 3]
    assert deltas.topk_counts(200, [1, 5, 50]) == [2, 10, 100]
    assert deltas.topk_counts(201, [1, 5, 50]) == [3, 11, 101]  # rounded up
    assert deltas.topk_counts(10**9, [1]) == [10**7]
    assert deltas.topk_counts(7, []) == []
    for numel in range(1, 300):
        for k in (1, 5, 10, 20, 50, 100):
            (count,) = deltas.topk_counts(numel, [k])
            assert 1 <= count <= numel
            assert count == max(1, -(-numel * k // 100))  # exact integer ceiling


# ---------------------------------------------------------------- job stores


def _train_job(model_dir, texts: dict[str, str], settings, nan_text: str | None = None):
    """Train every text as workflow_scripts/train.py does; `nan_text` gets a NaN loss in epoch 2."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = models.load_causal_lm(str(model_dir))
    layers = models.model_layers(model)
    engine = train.TorchEngine(model, settings, CPU)
    max_length = 16
    runs = {}
    for text_id, text in texts.items():
        token_ids = tokenizer(text)["input_ids"][:40]
        if len(token_ids) < 2:
            runs[text_id] = train.TextRun(
                text_id=text_id,
                n_tokens=len(token_ids),
                n_chunks=0,
                budget="3",
                failure="fewer than 2 tokens: nothing to predict",
            )
            continue
        chunks = train.chunk(token_ids, max_length)
        runner = _NanAtEpoch(engine, len(chunks), 2) if text_id == nan_text else engine
        runs[text_id] = train.train_text(runner, text_id, chunks, "3", settings)
    return engine, layers, runs


class _NanAtEpoch:
    def __init__(self, engine, n_chunks, epoch):
        self.engine, self.n_chunks, self.epoch, self.calls = engine, n_chunks, epoch, 0

    def __getattr__(self, name):  # everything else is the wrapped engine's
        return getattr(self.engine, name)

    def step(self, input_ids, lr):
        loss = self.engine.step(input_ids, lr)
        self.calls += 1
        return float("nan") if (self.calls - 1) // self.n_chunks + 1 == self.epoch else loss


def _write_job_store(path, policy, engine, layers, runs, texts, ks, snapshot_dtype=torch.float32):
    """A job store as workflow_scripts/train.py writes it, for runs already made."""
    attrs = {
        "kind": "train",
        "policy": policy,
        "model": "tiny",
        "model_path": "tiny",
        "revision": None,
        "dataset": "toy",
        "budget": "3",
        "engine": "torch",
        "seed": 0,
        "train": {},
        "ks": list(ks),
        "layers": [
            {
                "name": layer.name,
                "group": layer.group,
                "block": layer.block,
                "numel": layer.numel,
                "params": list(layer.params),
            }
            for layer in layers
        ],
        "texts": list(runs),
        "device": "cpu",
    }
    with store.atomic_group(path, attrs) as root:
        records = train.JobRecords(
            root, policy=policy, layers=layers, base=engine.base, ks=ks, snapshot_dtype=snapshot_dtype
        )
        for text_id, run in runs.items():
            records.add(run, data.text_sha256(texts[text_id]))
        records.close()
    return path


@pytest.fixture(scope="module")
def job(tiny_model_dir, sample_texts, tmp_path_factory):
    texts = {"t0": sample_texts[0], "t1": sample_texts[1], "short": "", "t3": sample_texts[2]}
    settings = train.Settings(lr=1e-3)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine, layers, runs = _train_job(tiny_model_dir, texts, settings, nan_text="t3")
    finally:
        torch.set_num_threads(previous)
    directory = tmp_path_factory.mktemp("stores")
    base = directory / "base.zarr"
    store.write_snapshot(base, engine.base, {"kind": "base"})
    paths = {
        policy: _write_job_store(directory / f"{policy}.zarr", policy, engine, layers, runs, texts, KS)
        for policy in ("sketch", "delta", "full")
    }
    return {"engine": engine, "layers": layers, "runs": runs, "texts": texts, "paths": paths, "base": base}


LABELS = {"t0": 1, "t1": 0, "short": 1, "t3": 0}
STAT_COLUMNS = ["l2", "sq", "dot", "base_sq"] + [f"topk_l2_{k}" for k in KS]


def test_job_fixture_has_ok_and_failed_texts(job):
    runs = job["runs"]
    assert runs["t0"].ok and runs["t1"].ok
    assert not runs["short"].ok and runs["short"].n_tokens == 1
    assert not runs["t3"].ok and runs["t3"].failed_epoch == 2


def test_three_policies_give_the_same_table(job):
    base = store.open_store(job["base"])
    tables = {
        policy: deltas.read_job_store(path, LABELS, KS, base if policy != "sketch" else None)
        for policy, path in job["paths"].items()
    }
    sketch, sketch_texts = tables["sketch"]
    layers = job["layers"]
    assert len(sketch) == 2 * len(layers)  # two texts trained, one row per layer each
    assert list(sketch.text_id.unique()) == ["t0", "t1"]
    assert set(sketch.columns) >= {
        "dataset",
        "model",
        "budget",
        "text_id",
        "label",
        "layer",
        "layer_index",
        "group",
        "block",
        "numel",
        *STAT_COLUMNS,
    }
    assert (sketch.dataset == "toy").all() and (sketch.model == "tiny").all() and (sketch.budget == "3").all()
    assert sketch.groupby("text_id").label.first().to_dict() == {"t0": 1, "t1": 0}
    assert sketch.layer.tolist()[: len(layers)] == [layer.name for layer in layers]
    assert (sketch.l2 > 0).all()

    # The table holds the statistics of after - base, computed here directly from the runs.
    for text_id in ("t0", "t1"):
        direct = deltas.layer_stats(layers, job["engine"].base, job["runs"][text_id].after, KS)
        rows = sketch[sketch.text_id == text_id]
        np.testing.assert_array_equal(rows.l2.to_numpy(), direct["layer_l2"])
        np.testing.assert_array_equal(rows[[f"topk_l2_{k}" for k in KS]].to_numpy(), direct["layer_topk_l2"])
        np.testing.assert_array_equal(rows["dot"].to_numpy(), direct["layer_dot"])
        np.testing.assert_array_equal(rows.base_sq.to_numpy(), direct["layer_base_sq"])

    for policy in ("delta", "full"):
        table, texts = tables[policy]
        pd.testing.assert_frame_equal(table.drop(columns=STAT_COLUMNS), sketch.drop(columns=STAT_COLUMNS))
        np.testing.assert_allclose(
            table[STAT_COLUMNS].to_numpy(), sketch[STAT_COLUMNS].to_numpy(), rtol=1e-6, atol=1e-9
        )
        pd.testing.assert_frame_equal(texts, sketch_texts)


def test_full_and_delta_stores_read_alike_with_any_threads(job):
    """The reduction of a full or delta store (base read once per layer, layers of several texts
    in flight on worker threads) gives the same table bit for bit whatever its thread count."""
    base = store.open_store(job["base"])
    for policy in ("delta", "full"):
        one, texts = deltas.read_job_store(job["paths"][policy], LABELS, KS, base, threads=1)
        for threads in (2, 3):
            other, other_texts = deltas.read_job_store(job["paths"][policy], LABELS, KS, base, threads=threads)
            pd.testing.assert_frame_equal(one, other)
            pd.testing.assert_frame_equal(texts, other_texts)


@pytest.mark.parametrize("snapshot_dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_delta_store_reduction_equals_layer_stats_of_its_tensors(job, tmp_path, snapshot_dtype):
    """A delta store's layers, decompressed straight into the statistics' buffer (float32) or
    read and copied there (bfloat16), give the statistics of the stored tensors bit for bit."""
    layers, engine = job["layers"], job["engine"]
    path = _write_job_store(
        tmp_path / "delta.zarr", "delta", engine, layers, job["runs"], job["texts"], KS, snapshot_dtype
    )
    base = store.open_store(job["base"])
    table, _ = deltas.read_job_store(path, LABELS, KS, base)
    before = store.read_tensors(base)
    for text_id in ("t0", "t1"):
        stored = store.read_tensors(store.open_store(path)[f"texts/{text_id}/params"])
        direct = deltas.layer_stats(layers, before, stored, KS, is_delta=True)
        rows = table[table.text_id == text_id]
        np.testing.assert_array_equal(rows.sq.to_numpy(), direct["layer_sq"])
        np.testing.assert_array_equal(rows["dot"].to_numpy(), direct["layer_dot"])
        np.testing.assert_array_equal(rows[[f"topk_l2_{k}" for k in KS]].to_numpy(), direct["layer_topk_l2"])


def test_base_norms_given_once_equal_those_taken_per_text(arch_model):
    """A job takes ||base||^2 per layer once (base_sq_per_layer) and hands it to layer_stats for
    every text: the statistics are those layer_stats takes itself."""
    layers = models.model_layers(arch_model)
    before, after = _random_after(arch_model, seed=4)
    own = deltas.layer_stats(layers, before, after, KS)
    given = deltas.layer_stats(layers, before, after, KS, base_sq=deltas.base_sq_per_layer(layers, before))
    for name in own:
        np.testing.assert_array_equal(own[name], given[name])


def test_one_scratch_for_many_states_gives_the_statistics_of_a_fresh_one(arch_model):
    """A job keeps one deltas.Scratch for all its texts: each state's statistics are those of a
    call with buffers of its own, the buffers of the first state serve the next ones, and a call
    that fails with a layer half filled gives its buffers back."""
    layers = models.model_layers(arch_model)
    scratch, buffers = deltas.Scratch(), []

    def same_as_fresh(seed: int) -> None:
        before, after = _random_after(arch_model, seed=seed)
        fresh = deltas.layer_stats(layers, before, after, KS)
        kept = deltas.layer_stats(layers, before, after, KS, scratch=scratch)
        for name in fresh:
            np.testing.assert_array_equal(fresh[name], kept[name])
        buffers.append(sorted(id(buffer) for buffer in scratch.free))

    same_as_fresh(5)
    same_as_fresh(6)
    assert buffers[0] == buffers[1]  # the second state took the first one's buffers, no new ones
    # The last tensor of a layer of several missing (of the last layer where every layer is one
    # tensor): its buffer is taken, the layer never completed.
    before, after = _random_after(arch_model, seed=7)
    dropped = next((layer.params[-1] for layer in layers if len(layer.params) > 1), layers[-1].params[-1])
    with pytest.raises(ValueError, match="no parameters for layers"):
        deltas.layer_stats(layers, before, {n: t for n, t in after.items() if n != dropped}, KS, scratch=scratch)
    assert scratch.open == {}
    same_as_fresh(8)


def test_failed_texts_are_recorded_without_delta_rows(job):
    table, texts = deltas.read_job_store(job["paths"]["sketch"], LABELS, KS)
    assert list(texts.columns) == deltas.TEXT_COLUMNS
    assert texts.text_id.tolist() == ["t0", "t1", "short", "t3"]
    records = texts.set_index("text_id")
    assert records.label.to_dict() == LABELS
    assert records.status.to_dict() == {"t0": "ok", "t1": "ok", "short": "failed", "t3": "failed"}
    assert records.loc["t3", "failed_epoch"] == 2 and "non-finite" in records.loc["t3", "failure"]
    assert "fewer than 2 tokens" in records.loc["short", "failure"]
    assert records.loc["short", "losses"] == [] and len(records.loc["t3", "losses"]) == 2
    assert records.loc["t0", "losses"] == job["runs"]["t0"].losses
    assert records.loc["t0", "epochs_run"] == 3 and records.loc["t0", "best_epoch"] == 3
    assert not set(table.text_id) & {"short", "t3"}


def test_sketch_store_reads_without_torch(job):
    """A deltas job over sketch stores needs numpy, pandas and zarr only: with torch blocked it
    reads the same table (torch's import is most of such a job's time)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from paramdelta import deltas\n"
        f"table, _ = deltas.read_job_store({str(job['paths']['sketch'])!r}, {LABELS!r}, {list(KS)!r})\n"
        "print(table.to_json())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    table, _ = deltas.read_job_store(job["paths"]["sketch"], LABELS, KS)
    assert result.stdout.strip() == table.to_json()


def test_sketch_store_subset_and_order_of_ks(job):
    full_ks, _ = deltas.read_job_store(job["paths"]["sketch"], LABELS, KS)
    subset, _ = deltas.read_job_store(job["paths"]["sketch"], LABELS, [50, 1])
    assert [c for c in subset.columns if c.startswith("topk")] == ["topk_l2_50", "topk_l2_1"]
    np.testing.assert_array_equal(subset.topk_l2_50, full_ks.topk_l2_50)
    np.testing.assert_array_equal(subset.topk_l2_1, full_ks.topk_l2_1)


def test_sketch_store_without_the_asked_k_raises(job):
    with pytest.raises(ValueError, match=r"\b10\b"):
        deltas.read_job_store(job["paths"]["sketch"], LABELS, [1, 10])


def test_delta_and_full_stores_compute_any_k(job):
    base = store.open_store(job["base"])
    delta, _ = deltas.read_job_store(job["paths"]["delta"], LABELS, [10, 20])
    full, _ = deltas.read_job_store(job["paths"]["full"], LABELS, [10, 20], base)
    np.testing.assert_allclose(delta[["topk_l2_10", "topk_l2_20"]], full[["topk_l2_10", "topk_l2_20"]], rtol=1e-6)
    assert (delta.topk_l2_10 <= delta.topk_l2_20).all()


def test_full_store_without_base_raises(job):
    with pytest.raises(ValueError, match="base"):
        deltas.read_job_store(job["paths"]["full"], LABELS, KS)


def test_same_seed_same_delta_table(tiny_model_dir, sample_texts, tmp_path):
    texts = {"a": sample_texts[0], "b": sample_texts[3]}
    settings = train.Settings(lr=1e-3, seed=3)
    tables = []
    for attempt in range(2):
        engine, layers, runs = _train_job(tiny_model_dir, texts, settings)
        path = _write_job_store(tmp_path / f"run{attempt}.zarr", "sketch", engine, layers, runs, texts, KS)
        table, records = deltas.read_job_store(path, {"a": 1, "b": 0}, KS)
        tables.append((table, records.drop(columns="seconds")))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0], check_exact=True)
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1], check_exact=True)
    assert len(tables[0][0]) == 2 * len(layers)
