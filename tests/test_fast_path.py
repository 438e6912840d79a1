"""The fast path gives the results of the plain one: fused optimizers, statistics kept instead
of whole states under early stopping, and several texts trained side by side."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from paramdelta import deltas, models, train
from paramdelta.side_by_side import SideBySideEngine

CPU = torch.device("cpu")
KS = [1, 5, 50]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def chunked(saved_tokenizer, sample_texts):
    """(text id, chunks): texts of 1, 2 and 3 chunks of different lengths, two of each count."""
    items = []
    for i, text in enumerate(sample_texts * 2):
        ids = saved_tokenizer(text)["input_ids"][: 20 + 9 * i]
        items.append((f"t{i}", train.chunk(ids, 24)))
    assert {len(chunks) for _, chunks in items} >= {1, 2, 3}
    return items


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


def _one_at_a_time(load_tiny, items, budget, settings):
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    return [train.train_text(engine, text_id, chunks, budget, settings) for text_id, chunks in items]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_fused_optimizer_equals_default(load_tiny, chunked, optimizer):
    base = dict(lr=1e-3, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    fused = _one_at_a_time(load_tiny, chunked[:3], "4", train.Settings(**base, fused=True))
    default = _one_at_a_time(load_tiny, chunked[:3], "4", train.Settings(**base, fused=False))
    for a, b in zip(fused, default):
        assert a.ok and b.ok
        assert _max_diff(a.after, b.after) < 1e-6
        assert a.losses == pytest.approx(b.losses, rel=1e-5)
    engine = train.TorchEngine(load_tiny(), train.Settings(**base), CPU)
    engine.reset()
    assert engine.optimizer.defaults["fused"] is True  # the default is the fused kernel


@pytest.mark.parametrize(
    "settings",
    [
        train.Settings(lr=1e-3),
        train.Settings(lr=1e-3, fused=False, schedule="constant", weight_decay=0.0),
        train.Settings(lr=3e-2, optimizer="sgd", momentum=0.9, grad_clip=0.5),
    ],
    ids=["adamw-cosine", "adamw-constant", "sgd-momentum-clipped"],
)
@pytest.mark.parametrize("budget", ["3", "es"])
def test_side_by_side_equals_one_at_a_time(load_tiny, chunked, settings, budget):
    # Early stopping that ends these texts' runs after 3 or 4 epochs, at different epochs.
    settings = dataclasses.replace(settings, patience=1, min_delta=0.1, max_epochs=8)
    alone = _one_at_a_time(load_tiny, chunked, budget, settings)
    # Width 4 over six texts of three chunk counts: full and partial groups.
    together = SideBySideEngine(load_tiny(), settings, CPU, width=4).train(chunked, budget)
    assert [r.text_id for r in together] == [text_id for text_id, _ in chunked]
    for a, b in zip(alone, together):
        assert a.ok and b.ok, (a.failure, b.failure)
        assert (a.n_tokens, a.n_chunks, a.epochs_run, a.best_epoch) == (
            b.n_tokens,
            b.n_chunks,
            b.epochs_run,
            b.best_epoch,
        )
        assert b.losses == pytest.approx(a.losses, rel=1e-5)
        assert b.lrs == pytest.approx(a.lrs, rel=1e-12)
        assert _max_diff(a.after, b.after) < 1e-6
    if budget == "es" and settings.optimizer == "adamw":  # some runs ended before others
        assert len({r.epochs_run for r in together}) > 1


def test_side_by_side_failure_stays_in_its_copy(load_tiny, chunked):
    """A copy whose loss becomes non-finite fails alone; the others are untouched."""
    settings = train.Settings(lr=1e-3)
    engine = SideBySideEngine(load_tiny(), settings, CPU, width=3)
    items = [item for item in chunked if len(item[1]) == 1][:2]
    # A huge-valued copy of one text's base can only come from a poisoned base: poison copy 0
    # by training a second engine whose base holds an infinity in one weight.
    clean = engine.train(items, "2")
    poisoned = SideBySideEngine(load_tiny(), settings, CPU, width=3)
    name = next(iter(poisoned.base))
    poisoned.base[name][0] = float("inf")
    runs = poisoned.train(items, "2")
    assert all(not run.ok for run in runs)  # every copy starts from the poisoned base
    assert all(run.ok for run in clean)


@pytest.mark.parametrize("copy_on_device", [True, False])
def test_statistics_kept_on_the_device_equal_the_state_kept(load_tiny, chunked, copy_on_device):
    """Under a sketch, early stopping keeps a copy of the best state on the device or, with no
    room for one, the best epoch's statistics: the same numbers as the statistics of the
    state kept on the host."""
    settings = train.Settings(lr=1e-3, patience=2, min_delta=0.05, max_epochs=8)
    layers = models.model_layers(load_tiny())
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    engine.copy_on_device = copy_on_device  # False: as on a GPU with no room for a copy
    summarise = lambda named: deltas.layer_stats(layers, engine.base, named, KS)  # noqa: E731
    for budget in ("3", "es"):
        for text_id, chunks in chunked[:3]:
            kept = train.train_text(engine, text_id, chunks, budget, settings)
            summarised = train.train_text(engine, text_id, chunks, budget, settings, summarise)
            assert kept.after is not None and summarised.after is None
            assert kept.best_epoch == summarised.best_epoch
            expected = deltas.layer_stats(layers, engine.base, kept.after, KS)
            for name, values in expected.items():
                np.testing.assert_array_equal(summarised.stats[name], values)


def test_layer_stats_from_a_stream_equal_from_a_mapping(load_tiny):
    """The statistics of tensors arriving one at a time (DeepSpeed gathers them so) equal
    those of the whole state; parameters outside every layer are ignored."""
    model = load_tiny()
    layers = models.model_layers(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    after = {name: t + 1e-3 * torch.randn(t.shape, generator=generator) for name, t in before.items()}
    whole = deltas.layer_stats(layers, before, after, KS)
    streamed = deltas.layer_stats(layers, before, iter(list(after.items())[::-1]), KS)
    for name in whole:
        np.testing.assert_array_equal(whole[name], streamed[name])
    with pytest.raises(ValueError, match="no parameters for layers"):
        deltas.layer_stats(layers, before, iter(list(after.items())[1:]), KS)


def test_base_in_host_memory_gives_the_same_runs(load_tiny, chunked, monkeypatch):
    """With no room on the device beside the training state, the torch engine keeps the base in
    (page-locked, on a GPU) host memory and restores it from there: the same runs, each text
    from the exact base."""
    settings = train.Settings(lr=1e-3)
    on_device = train.TorchEngine(load_tiny(), settings, CPU)
    n = sum(p.numel() for p in on_device.params.values())
    base = sum(t.numel() * t.element_size() for t in on_device.base.values())
    # AdamW: gradients and two moments (12 bytes a parameter) and the base must fit.
    monkeypatch.setattr(train, "_spare_bytes", lambda device: 12 * n + base - 1)
    on_host = train.TorchEngine(load_tiny(), settings, CPU)
    assert on_device.base_on_device and not on_host.base_on_device and not on_host.copy_on_device
    for text_id, chunks in chunked[:2] + chunked[:1]:
        a = train.train_text(on_device, text_id, chunks, "3", settings)
        b = train.train_text(on_host, text_id, chunks, "3", settings)
        assert all(torch.equal(a.after[name], b.after[name]) for name in a.after)


def test_host_copy_without_pinned_memory_is_pageable():
    """Page-locked host copies need an accelerator: without one the copy is pageable, with one
    warning a process, and the same values in fp32, in memory of its own."""
    source = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    train._PINNING_FAILED = False
    try:
        if torch.cuda.is_available():
            pytest.skip("pinning works here")
        with pytest.warns(UserWarning, match="pageable"):
            first = train._host_copy(source, pin=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            second = train._host_copy(source, pin=True)
        assert not caught  # one warning a process
    finally:
        train._PINNING_FAILED = False
    for copy in (first, second):
        assert copy.dtype == torch.float32 and copy.device.type == "cpu" and not copy.is_pinned()
        assert torch.equal(copy, source.float()) and copy.data_ptr() != source.data_ptr()


def test_host_slabs_pack_a_states_tensors_without_power_of_two_rounding():
    """A state's host copies carved from slabs (torch's pinned allocator rounds each allocation up
    to a power of two): every tensor its own bytes, the values exact, and little left over. Here
    with pageable slabs, which is all a CPU has."""
    allocated = []

    def allocate(n):
        allocated.append(n)
        return torch.empty(n, dtype=torch.uint8)

    slabs = train.HostSlabs(allocate)
    slabs.SLAB = 1 << 20  # 1 MiB slabs for tensors of tens of KiB: about the proportions of 1 GiB and 7B
    generator = torch.Generator().manual_seed(0)
    # Llama-like: an embedding, then per layer four square matrices, three MLP matrices 2.7 times
    # as large and a norm, then the head and a scalar.
    layer = [(64, 64)] * 4 + [(172, 64)] * 3 + [(64,)]
    shapes = [(600, 256)] + layer * 32 + [(600, 256), ()]
    sources = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]
    copies = [train._host_copy(source, pin=True, slabs=slabs) for source in sources]
    for source, copy in zip(sources, copies):
        assert copy.dtype == torch.float32 and copy.shape == source.shape and torch.equal(copy, source.float())
    spans = sorted((c.data_ptr(), c.data_ptr() + 4 * c.numel()) for c in copies if c.numel())
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))  # no two overlap
    assert all(4 * c.storage_offset() % slabs.ALIGN == 0 for c in copies)  # from its slab's start
    assert set(allocated) == {slabs.SLAB}
    held = 4 * sum(c.numel() for c in copies)
    one_by_one = sum(1 << max(0, 4 * c.numel() - 1).bit_length() for c in copies)
    assert sum(allocated) < held + slabs.SLAB and sum(allocated) < 0.85 * one_by_one
    # A tensor larger than a slab takes a slab of its own, the next power of two, whose rest
    # serves the tensors after it.
    large = slabs.empty((1200, 256))
    assert allocated[-1] == 2 << 20 and large.shape == (1200, 256)
    assert slabs.empty((800, 256)).untyped_storage().data_ptr() == large.untyped_storage().data_ptr()
    assert allocated[-1] == 2 << 20  # no new slab for it


@pytest.fixture(scope="module")
def half_checkpoints(tiny_model_dir, tmp_path_factory):
    """The tiny model saved as a bfloat16 and as a float16 checkpoint (as hub models are)."""
    from transformers import AutoTokenizer

    from paramdelta import target

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    paths = {}
    for dtype in (torch.bfloat16, torch.float16):
        model = models.load_causal_lm(str(tiny_model_dir)).to(dtype)
        paths[dtype] = tmp_path_factory.mktemp("half") / str(dtype).split(".")[-1]
        target.save(model, tokenizer, paths[dtype])
    return paths


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_base_of_a_16_bit_checkpoint_is_kept_in_16_bits_and_gives_the_same_runs(
    half_checkpoints, chunked, monkeypatch, dtype
):
    """A model loaded from a 16-bit checkpoint is trained in fp32 from the exact upcast of its
    weights; the base kept in the checkpoint's 16 bits (train.base_dtype) is that base bit for
    bit, at half the memory: the same runs as an fp32 base, on the device or in host memory,
    under the torch engine and DeepSpeed ZeRO-2 (fp32 and bf16 module, optimizer offloaded)."""
    path = str(half_checkpoints[dtype])
    settings = train.Settings(lr=1e-3)
    half = train.TorchEngine(models.load_causal_lm(path), settings, CPU)
    # 16 bits each (a float16 checkpoint's ones and zeros are bfloat16 as well: whichever holds them)
    assert all(t.element_size() == 2 for t in half.base.values())
    assert any(t.dtype == dtype for t in half.base.values())
    assert all(p.dtype == torch.float32 for p in half.params.values())
    n = sum(p.numel() for p in half.params.values())
    with monkeypatch.context() as patch:
        patch.setattr(train, "_spare_bytes", lambda device: 12 * n + 2 * n - 1)  # no room for it
        on_host = train.TorchEngine(models.load_causal_lm(path), settings, CPU)
        patch.setattr(train, "base_dtype", lambda tensor: torch.float32)
        full = train.TorchEngine(models.load_causal_lm(path), settings, CPU)
    assert not on_host.base_on_device and all(t.element_size() == 2 for t in on_host.base.values())
    assert all(t.dtype == torch.float32 for t in full.base.values())
    assert all(torch.equal(half.base[name].float(), full.base[name]) for name in full.base)
    layers = models.model_layers(half.model)
    for text_id, chunks in chunked[:2] + chunked[:1]:
        runs = [train.train_text(engine, text_id, chunks, "3", settings) for engine in (half, on_host, full)]
        for run in runs[:2]:
            assert all(torch.equal(run.after[name], runs[2].after[name]) for name in run.after)
        # The statistics against the 16-bit base are those against the fp32 one.
        stats = [deltas.layer_stats(layers, engine.base, runs[2].after, KS) for engine in (half, full)]
        for key in stats[0]:
            np.testing.assert_array_equal(stats[0][key], stats[1][key])

    # DeepSpeed ZeRO-2 (one process, gloo): its master weights restored from the 16-bit base.
    import os

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    setups = [
        ("deepspeed_zero2.json", "fp32"),
        ("deepspeed_zero2.json", "bf16"),
        ("deepspeed_zero2_offload.json", "fp32"),
    ]
    for name, precision in setups:
        ds_settings = dataclasses.replace(settings, precision=precision)
        config = train.deepspeed_config(os.path.join(repo, "config", name), ds_settings)
        engines = []
        for narrow in (True, False):
            with monkeypatch.context() as patch:
                if not narrow:
                    patch.setattr(train, "base_dtype", lambda tensor: torch.float32)
                engines.append(train.DeepSpeedEngine(models.load_causal_lm(path), ds_settings, CPU, config))
        assert all(t.element_size() == 2 for t in engines[0].base.values())
        for text_id, chunks in chunked[:2]:
            a, b = (train.train_text(engine, text_id, chunks, "2", ds_settings) for engine in engines)
            assert all(torch.equal(a.after[key], b.after[key]) for key in a.after), (name, precision)
        engines[0].reset()
        assert all(torch.equal(engines[0].state()[key], full.base[key]) for key in full.base)


def test_a_16_bit_base_is_widened_where_it_is_written():
    """A 16-bit base is sent to a GPU as it is and widened there (half the bytes over the link: not
    run here, no GPU); bound for host memory (a ZeRO-Offload master) it is not moved ahead, so the
    blocking copy that writes it widens it exactly, never an asynchronous copy not yet landed; an
    fp32 base, or one already where it goes, is used as it is."""
    half = torch.ones(3, dtype=torch.bfloat16)
    on_meta = half.to("meta")
    assert train._widened_on(on_meta, CPU) is on_meta  # device to host: not moved ahead
    assert train._widened_on(half, CPU) is half
    single = torch.ones(3)
    assert train._widened_on(single, torch.device("meta")) is single
    assert deltas._to_device(half, CPU).dtype == torch.float32
