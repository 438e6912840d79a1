"""Tests for paramdelta.train: chunking, the schedule, exact restores, budgets, failures, engines."""

from __future__ import annotations

import functools
import math
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from paramdelta import deltas, models, train

CPU = torch.device("cpu")
REPO_DEEPSPEED_CONFIG = str(Path(__file__).resolve().parents[1] / "config" / "deepspeed_zero2.json")
REPO_OFFLOAD_CONFIG = str(Path(__file__).resolve().parents[1] / "config" / "deepspeed_zero2_offload.json")
N_TOKENS = 40  # short texts keep every run to a few optimizer steps
MAX_LENGTH = 16  # -> 3 chunks per text


pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------- helpers


def _chunks(tokenizer, text: str) -> list[torch.Tensor]:
    ids = tokenizer(text)["input_ids"][:N_TOKENS]
    assert len(ids) == N_TOKENS
    return train.chunk(ids, MAX_LENGTH)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[name], b[name]) for name in a)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


class Scripted:
    """Wraps a real engine: trains for real, but reports scripted per-epoch losses.

    Records the engine's state at the end of every epoch, so a test can tell which
    epoch's parameters train_text handed back.
    """

    def __init__(self, engine, n_chunks: int, losses: list[float]):
        self.engine, self.n_chunks, self.losses = engine, n_chunks, losses
        self.calls, self.epoch_states = 0, []

    @property
    def base(self):
        return self.engine.base

    def reset(self):
        self.calls, self.epoch_states = 0, []
        self.engine.reset()

    def step(self, input_ids, lr):
        self.engine.step(input_ids, lr)
        epoch = self.calls // self.n_chunks
        self.calls += 1
        if self.calls % self.n_chunks == 0:
            self.epoch_states.append(self.engine.state())
        return self.losses[epoch]

    def state(self, into=None):
        return self.engine.state(into)

    def keep(self, into=None):
        return self.engine.keep(into)

    def evaluate(self, chunks):
        """The loss after an epoch, for early stopping: the epoch's scripted loss."""
        return self.losses[self.calls // self.n_chunks - 1]

    def fingerprint(self):
        return self.engine.fingerprint()

    def agree(self, flag):
        return self.engine.agree(flag)

    @property
    def skipped_steps(self):
        return self.engine.skipped_steps


@pytest.fixture
def texts(saved_tokenizer, sample_texts):
    return [_chunks(saved_tokenizer, text) for text in sample_texts]


# ---------------------------------------------------------------- chunk


def test_chunk_balanced_ordered_and_bounded():
    rng = random.Random(0)
    cases = [(n, m) for m in (3, 4, 7, 16, 64) for n in range(2, 3 * m + 2)]
    cases += [(rng.randrange(2, 5000), rng.randrange(3, 600)) for _ in range(300)]
    for n, max_length in cases:
        ids = [rng.randrange(1000) for _ in range(n)]
        pieces = train.chunk(ids, max_length)
        sizes = [p.shape[1] for p in pieces]
        assert all(p.dim() == 2 and p.shape[0] == 1 and p.dtype == torch.long for p in pieces)
        assert torch.cat(pieces, dim=1)[0].tolist() == ids, (n, max_length)  # all tokens, in order
        assert len(pieces) == math.ceil(n / max_length)  # as few chunks as the context allows
        assert max(sizes) <= max_length
        assert max(sizes) - min(sizes) <= 1, (n, max_length, sizes)
        assert min(sizes) >= 2, (n, max_length, sizes)  # never a lone token with nothing to predict


def test_chunk_short_text_is_one_chunk():
    pieces = train.chunk([5, 6, 7], 64)
    assert len(pieces) == 1 and pieces[0].tolist() == [[5, 6, 7]]
    # 65 tokens in a 64-token context: two chunks of 33 and 32, not 64 + a lone token.
    assert [p.shape[1] for p in train.chunk(list(range(65)), 64)] == [33, 32]


# ---------------------------------------------------------------- lr schedule


def test_cosine_schedule_no_warmup_decays_to_zero():
    settings = train.Settings(lr=3e-5)
    total = 40
    lrs = [train.lr_at(step, total, settings) for step in range(total + 1)]
    assert lrs[0] == settings.lr  # no warm-up: the first step uses the full lr
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly decreasing
    assert lrs[total // 2] == pytest.approx(settings.lr / 2)
    assert lrs[total - 1] < 0.01 * settings.lr
    assert lrs[total] == pytest.approx(0.0, abs=1e-20)


def test_constant_schedule():
    settings = train.Settings(lr=1e-3, schedule="constant")
    assert {train.lr_at(step, 17, settings) for step in range(17)} == {1e-3}


def test_recorded_lrs_follow_the_schedule_over_the_whole_run(load_tiny, texts):
    settings = train.Settings(lr=1e-3)
    run = train.train_text(train.TorchEngine(load_tiny(), settings, CPU), "t", texts[0], "4", settings)
    total = 4 * len(texts[0])
    expected = [train.lr_at((epoch + 1) * len(texts[0]) - 1, total, settings) for epoch in range(4)]
    assert run.lrs == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- exact restore and determinism


@pytest.mark.parametrize(
    "optimizer", [dict(), dict(optimizer="sgd", momentum=0.9, fused=False)], ids=["adamw", "sgd-momentum"]
)
def test_each_text_starts_from_the_exact_base(load_tiny, texts, optimizer):
    settings = train.Settings(lr=1e-3, **optimizer)
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    base = {name: t.clone() for name, t in engine.base.items()}
    first = train.train_text(engine, "a", texts[0], "3", settings)
    then = train.train_text(engine, "b", texts[1], "3", settings)

    alone = train.train_text(train.TorchEngine(load_tiny(), settings, CPU), "b", texts[1], "3", settings)
    assert first.ok and then.ok and alone.ok
    assert not _equal(then.after, base)  # training did something
    assert _equal(then.after, alone.after)  # bit for bit: base restored, fresh optimizer state
    assert then.losses == alone.losses

    engine.reset()
    assert _equal(engine.state(), base)
    assert _equal(engine.base, base)  # training never touched the kept base
    # A fresh optimizer: its state restarted in place (train._restart), every step count and moment zero.
    assert all(not torch.any(value) for state in engine.optimizer.state.values() for value in state.values())


def test_same_text_twice_is_deterministic(load_tiny, texts):
    settings = train.Settings(lr=1e-3)
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    one = train.train_text(engine, "a", texts[2], "3", settings)
    two = train.train_text(engine, "a", texts[2], "3", settings)
    assert _equal(one.after, two.after)
    assert one.losses == two.losses
    assert one.attrs() | {"seconds": 0} == two.attrs() | {"seconds": 0}


# ---------------------------------------------------------------- budgets


def test_fixed_budget_runs_exactly_that_many_epochs(load_tiny, texts):
    settings = train.Settings(lr=1e-3, patience=1)  # patience must not matter for a fixed budget
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    run = train.train_text(engine, "a", texts[0], "5", settings)
    assert run.ok and run.budget == "5"
    assert len(run.losses) == len(run.lrs) == run.epochs_run == 5
    assert run.best_epoch == 5
    assert run.n_chunks == len(texts[0]) == 3 and run.n_tokens == N_TOKENS
    assert run.losses[-1] < run.losses[0]  # lr 1e-3 on one short text: the loss falls
    assert _equal(run.after, engine.state())  # the final state, not an earlier one
    attrs = run.attrs()
    assert attrs["status"] == "ok" and attrs["failure"] is None and attrs["failed_epoch"] is None
    assert attrs["epochs_run"] == 5 and attrs["final_loss"] == run.losses[4]


def _traced_run(load_tiny, chunks, budget: str, settings: train.Settings) -> tuple[train.TextRun, list]:
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    layers = models.model_layers(engine.model)

    def trace(named, stacked=False):
        return deltas.layer_l2(layers, engine.base, named, stacked=stacked)

    return train.train_text(engine, "a", chunks, budget, settings, trace=trace), layers, engine


def test_trajectory_records_each_layers_change_after_every_epoch(load_tiny, texts):
    run, layers, engine = _traced_run(load_tiny, texts[0], "4", train.Settings(lr=1e-3))
    assert len(run.trajectory) == 4 and all(values.shape == (len(layers),) for values in run.trajectory)
    final = deltas.layer_stats(layers, engine.base, run.after, ())["layer_l2"]
    np.testing.assert_allclose(run.trajectory[-1], final, rtol=1e-6)
    # The change grows over the first epochs of a text the loss keeps falling on.
    assert (np.stack(run.trajectory).sum(axis=1)[1:] > np.stack(run.trajectory).sum(axis=1)[:-1]).all()


def test_with_a_constant_schedule_a_shorter_budget_is_a_prefix_of_the_trajectory(load_tiny, texts):
    constant = train.Settings(lr=1e-3, schedule="constant")
    long, _, _ = _traced_run(load_tiny, texts[0], "4", constant)
    short, _, _ = _traced_run(load_tiny, texts[0], "2", constant)
    np.testing.assert_array_equal(np.stack(short.trajectory), np.stack(long.trajectory)[:2])
    # Under the cosine schedule the lr of an epoch depends on the run's length: no such reading.
    cosine = train.Settings(lr=1e-3)
    long, _, _ = _traced_run(load_tiny, texts[0], "4", cosine)
    short, _, _ = _traced_run(load_tiny, texts[0], "2", cosine)
    assert not np.allclose(short.trajectory[1], long.trajectory[1], rtol=1e-3)


def test_early_stopping_with_a_flat_loss_keeps_the_first_epoch(load_tiny, texts):
    # lr 0: nothing moves, the loss is the same every epoch, so epoch 1 stays the best.
    settings = train.Settings(lr=0.0, patience=3, max_epochs=50)
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    run = train.train_text(engine, "a", texts[0], "es", settings)
    assert run.ok
    assert run.epochs_run == 1 + settings.patience
    assert run.best_epoch == 1
    assert len(set(run.losses)) == 1
    assert _equal(run.after, engine.base)


def test_early_stopping_returns_the_best_epoch_parameters(load_tiny, texts):
    # Real training, scripted losses: improvements smaller than min_delta do not reset the
    # patience (it runs out 3 epochs after epoch 3), but the lowest loss is the state kept.
    settings = train.Settings(lr=1e-3, patience=3, max_epochs=50, min_delta=1e-4)
    losses = [5.0, 4.0, 3.0, 3.0 - 5e-5, 3.5, 3.0 - 5e-5, 9.0, 9.0, 9.0, 9.0]
    engine = Scripted(train.TorchEngine(load_tiny(), settings, CPU), len(texts[0]), losses)
    run = train.train_text(engine, "a", texts[0], "es", settings)
    assert run.ok
    assert run.best_epoch == 4  # the first epoch with the lowest loss
    assert run.epochs_run == 3 + settings.patience == 6
    assert run.losses == losses[:6]
    assert run.attrs()["final_loss"] == 3.0 - 5e-5
    assert len(engine.epoch_states) == 6
    assert _equal(run.after, engine.epoch_states[3])  # the state at the end of epoch 4 ...
    assert not _equal(run.after, engine.epoch_states[-1])  # ... not the last one
    # The cosine schedule of an `es` run spans the epoch cap.
    assert run.lrs[0] == pytest.approx(train.lr_at(len(texts[0]) - 1, 50 * len(texts[0]), settings))


@pytest.mark.parametrize("text", [0, 1], ids=["several chunks", "one chunk"])
def test_early_stopping_keeps_the_state_whose_loss_is_lowest(load_tiny, texts, text):
    # Real losses: the loss early stopping compares is that of the state it keeps, evaluated
    # after the epoch's steps; the training loss of an epoch is measured before each step.
    settings = train.Settings(lr=3e-3, patience=2, max_epochs=8, min_delta=0.0)
    chunks = texts[text] if text == 0 else texts[0][:1]
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    run = train.train_text(engine, "a", chunks, "es", settings)
    assert run.ok and len(run.end_losses) == run.epochs_run
    assert run.best_epoch == 1 + run.end_losses.index(min(run.end_losses))

    engine.reset()
    with torch.no_grad():
        for name, p in engine.params.items():
            p.copy_(run.after[name])
    assert engine.evaluate(chunks) == run.end_losses[run.best_epoch - 1] == run.attrs()["best_loss"]
    if len(chunks) == 1:
        # One chunk: the next epoch's training loss is measured on the state after this one.
        assert run.end_losses[:-1] == pytest.approx(run.losses[1:], rel=1e-6)


def test_early_stopping_stops_at_the_epoch_cap(load_tiny, texts):
    settings = train.Settings(lr=1e-3, patience=5, max_epochs=4)
    losses = [4.0, 3.0, 2.0, 1.0]
    engine = Scripted(train.TorchEngine(load_tiny(), settings, CPU), len(texts[0]), losses)
    run = train.train_text(engine, "a", texts[0], "es", settings)
    assert run.ok and run.epochs_run == 4 and run.best_epoch == 4
    assert _equal(run.after, engine.epoch_states[-1])


@pytest.mark.parametrize("text", [0, 1], ids=["several chunks", "one chunk"])
def test_replaying_the_best_epoch_gives_the_state_kept(load_tiny, texts, text):
    """train.best_state replay keeps nothing while the run goes on, then trains the text again
    from the base to its best epoch: on a CPU the very state (and statistics) that keeping gives,
    with the same record, and the replay says it was exact."""
    chunks = texts[text] if text == 0 else texts[0][:1]
    # An lr this high, held constant, makes the loss go up again after a few epochs (single-threaded,
    # as this module runs: best epoch 9 of 11 with several chunks, 2 of 4 with one).
    keep = train.Settings(lr=0.3, schedule="constant", patience=2, max_epochs=12, min_delta=0.0, best_state="keep")
    replay = train.Settings(**{**keep.__dict__, "best_state": "replay"})
    engine = train.TorchEngine(load_tiny(), keep, CPU)
    layers = models.model_layers(engine.model)
    summarise = deltas.Summariser(layers, engine.base, (1, 50))
    kept = train.train_text(engine, "a", chunks, "es", keep)
    replayed = train.train_text(engine, "a", chunks, "es", replay)
    assert kept.ok and 1 < replayed.best_epoch < replayed.epochs_run  # something to replay
    assert _equal(replayed.after, kept.after)
    assert replayed.replay_exact is True and kept.replay_exact is None
    assert replayed.attrs() | {"seconds": 0, "replay_exact": None} == kept.attrs() | {"seconds": 0}
    # The job's own statistics (store sketch), from the replayed state: the same bits.
    kept_stats = train.train_text(engine, "a", chunks, "es", keep, summarise)
    replayed_stats = train.train_text(engine, "a", chunks, "es", replay, summarise)
    for name in kept_stats.stats:
        np.testing.assert_array_equal(replayed_stats.stats[name], kept_stats.stats[name], err_msg=name)
    # A run whose best epoch is its last leaves that state in the engine: nothing to replay.
    capped = train.Settings(**{**replay.__dict__, "max_epochs": 2, "patience": 5})
    last = train.train_text(engine, "a", chunks, "es", capped)
    assert last.best_epoch == last.epochs_run == 2 and last.replay_exact is None


def test_replaying_with_dropout_and_the_cosine_schedule_gives_the_state_kept(tiny_tokenizer, texts):
    """The replay draws the first pass's dropout masks (the same seed) and learning rates (the
    cosine schedule over the epoch cap, not over the epochs replayed)."""
    from conftest import TINY, _special_ids

    config = models.tiny_config("gpt-neox", len(tiny_tokenizer), **TINY, **_special_ids(tiny_tokenizer))
    config.hidden_dropout = config.attention_dropout = 0.1
    keep = train.Settings(lr=0.3, patience=2, max_epochs=12, min_delta=0.0, best_state="keep")
    runs = {}
    for best_state in ("keep", "replay"):
        settings = train.Settings(**{**keep.__dict__, "best_state": best_state})
        engine = train.TorchEngine(models.build_model(config, seed=0), settings, CPU)
        runs[best_state] = train.train_text(engine, "a", texts[0][:1], "es", settings)
    assert 1 < runs["replay"].best_epoch < runs["replay"].epochs_run  # best epoch 2 of 4
    assert runs["replay"].replay_exact is True and _equal(runs["replay"].after, runs["keep"].after)


def test_bit_sums_tell_states_apart_by_one_bit():
    a = {"w": torch.randn(1000, generator=torch.Generator().manual_seed(0)), "b": torch.ones(7, dtype=torch.bfloat16)}
    sums = train.bit_sums(a.values())
    assert sums.dtype == torch.int64 and sums.shape == (2,)
    assert torch.equal(train.bit_sums({k: v.clone() for k, v in a.items()}.values()), sums)
    for name in a:
        b = {k: v.clone() for k, v in a.items()}
        b[name].view(torch.int32 if b[name].dtype == torch.float32 else torch.int16)[3] += 1  # one ulp
        assert not torch.equal(train.bit_sums(b.values()), sums), name


@pytest.mark.parametrize("drift", ["loss", "weights"])
def test_a_replay_that_ends_elsewhere_says_so(load_tiny, texts, drift):
    """Where training is not reproducible bit for bit (here the replay's loss differs, or one of its
    weights by one ulp with the same loss), the run keeps the replayed state, warns, and records
    replay_exact False."""

    class Drifting(Scripted):
        resets = 0

        def reset(self):
            self.resets += 1
            super().reset()

        def step(self, input_ids, lr):
            if drift == "weights" and self.resets > 1:  # one value one ulp up before each replayed step
                with torch.no_grad():
                    next(iter(self.engine.params.values())).view(-1).view(torch.int32)[0] += 1
            return super().step(input_ids, lr)

        def evaluate(self, chunks):
            return super().evaluate(chunks) + (1e-9 if drift == "loss" and self.resets > 1 else 0.0)

    settings = train.Settings(lr=1e-3, patience=2, max_epochs=50, best_state="replay")
    engine = Drifting(train.TorchEngine(load_tiny(), settings, CPU), len(texts[0]), [5.0, 4.0, 3.0, 4.0, 4.0])
    with pytest.warns(UserWarning, match="not reproducible bit for bit"):
        run = train.train_text(engine, "a", texts[0], "es", settings)
    assert run.ok and run.best_epoch == 3 and run.epochs_run == 5
    assert run.replay_exact is False and run.attrs()["replay_exact"] is False
    assert _equal(run.after, engine.epoch_states[-1]) and len(engine.epoch_states) == 3  # the replay's epoch 3


def test_auto_replays_where_keeping_would_cross_the_host_link():
    class Engine:
        def __init__(self, device="cuda", copy=False, base=False, world=1):
            self.device, self.copy_on_device, self.base_on_device = torch.device(device), copy, base
            self.world_size = world

    auto = train.Settings()
    assert auto.best_state == "auto"
    replays = functools.partial(train.replays, settings=auto)
    # A CPU keeps (a copy is a copy in memory), and so does a GPU with room for a copy.
    assert not replays(Engine("cpu"), sketch=True) and not replays(Engine("cpu"), sketch=False)
    assert not replays(Engine(copy=True, base=True), sketch=False)
    # No room for a copy: full and delta would send the state to host memory at every new best.
    assert replays(Engine(base=True), sketch=False)
    # Sketch summarises where the state is: it replays only where the base would come from the
    # host, or DeepSpeed would gather the master from several GPUs.
    assert not replays(Engine(base=True), sketch=True)
    assert replays(Engine(base=False), sketch=True)
    assert replays(Engine(base=True, world=2), sketch=True)
    # Set by hand, either way anywhere.
    assert train.replays(Engine("cpu"), train.Settings(best_state="replay"), sketch=True)
    assert not train.replays(Engine(), train.Settings(best_state="keep"), sketch=False)


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("budget", ["5", "es"])
def test_non_finite_loss_fails_the_text(load_tiny, texts, bad, budget):
    settings = train.Settings(lr=1e-3, patience=20, max_epochs=30)
    engine = Scripted(train.TorchEngine(load_tiny(), settings, CPU), len(texts[0]), [5.0, 4.0, bad] + [3.0] * 30)
    run = train.train_text(engine, "a", texts[0], budget, settings)
    assert not run.ok
    assert run.failed_epoch == 3
    assert run.after is None
    assert run.epochs_run == 3  # stopped at once, not retried or continued
    assert "non-finite" in run.failure
    attrs = run.attrs()
    assert attrs["status"] == "failed" and attrs["failed_epoch"] == 3 and attrs["final_loss"] is None


def test_diverging_sgd_fails_for_real(load_tiny, texts):
    settings = train.Settings(optimizer="sgd", lr=1e6, grad_clip=0.0, weight_decay=0.0, schedule="constant")
    run = train.train_text(train.TorchEngine(load_tiny(), settings, CPU), "a", texts[0], "10", settings)
    assert not run.ok and run.after is None
    assert run.failed_epoch is not None and 1 <= run.failed_epoch <= 10
    assert run.attrs()["status"] == "failed"


def test_finite_loss_but_non_finite_weights_fails(load_tiny, texts):
    # One epoch of one chunk: the only loss is computed before the step that blows the
    # weights up, so only a check of the parameters themselves can catch it.
    settings = train.Settings(optimizer="sgd", lr=math.inf, grad_clip=0.0, weight_decay=0.0, schedule="constant")
    run = train.train_text(train.TorchEngine(load_tiny(), settings, CPU), "a", texts[0][:1], "1", settings)
    assert math.isfinite(run.losses[0])
    assert not run.ok and run.after is None and run.failed_epoch == 1


# ---------------------------------------------------------------- precision and optimizers


def test_bf16_compute_keeps_fp32_master_weights(load_tiny, texts):
    settings = train.Settings(precision="bf16")  # the default lr 3e-5
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    assert all(p.dtype == torch.float32 for p in engine.params.values())
    run = train.train_text(engine, "a", texts[0][:1], "1", settings)  # one step of lr 3e-5
    assert run.ok and math.isfinite(run.losses[0])
    assert all(t.dtype == torch.float32 for t in run.after.values())
    assert all(p.dtype == torch.float32 for p in engine.params.values())
    # The weights really are fp32: almost none of them sits on the bf16 grid (a bf16 copy cast
    # back to fp32 would), almost every one moved, and by about lr, as one AdamW step does.
    for name in ("gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "gpt_neox.layers.1.attention.dense.weight"):
        after, base = run.after[name], engine.base[name]
        assert (after == after.bfloat16().float()).float().mean().item() < 0.05
        assert (after != base).float().mean().item() > 0.9
        step = (after - base).abs().median().item()
        assert 0.5 * settings.lr < step < 2 * settings.lr


def test_fp16_loss_scale_is_fresh_for_every_text(load_tiny, texts):
    settings = train.Settings(lr=1e-3, precision="fp16")
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    train.train_text(engine, "a", texts[0], "2", settings)
    engine.scaler.update(new_scale=2.0**-10)  # as if text a had overflowed again and again
    then = train.train_text(engine, "b", texts[1], "2", settings)
    alone = train.train_text(train.TorchEngine(load_tiny(), settings, CPU), "b", texts[1], "2", settings)
    assert then.ok and all(t.dtype == torch.float32 for t in then.after.values())
    assert _equal(then.after, alone.after)


def test_fp16_skipped_steps_are_counted_per_text(load_tiny, texts, monkeypatch):
    # A loss scale far too large: every fp16 backward overflows, so the scaler skips every
    # step (and halves its scale): nothing moves, and the run says how many were skipped.
    settings = train.Settings(lr=1e-3, precision="fp16")
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    huge = functools.partial(torch.amp.GradScaler, init_scale=2.0**100)
    monkeypatch.setattr(train.torch.amp, "GradScaler", huge)
    run = train.train_text(engine, "a", texts[0], "2", settings)
    assert run.ok and run.skipped_steps == 2 * len(texts[0]) and run.attrs()["skipped_steps"] == run.skipped_steps
    assert _equal(run.after, engine.base)
    monkeypatch.undo()
    clean = train.train_text(engine, "b", texts[1], "2", settings)
    assert clean.ok and clean.skipped_steps == 0  # counted per text, from zero


@pytest.mark.parametrize("scope", ["all", "matrices"])
def test_weight_decay_on_matrices_spares_biases_and_norms(load_tiny, scope):
    settings = train.Settings(weight_decay=0.5, weight_decay_on=scope)
    model = load_tiny()
    engine = train.TorchEngine(model, settings, CPU)
    engine.reset()
    decay = {id(p): group["weight_decay"] for group in engine.optimizer.param_groups for p in group["params"]}
    assert len(decay) == len(engine.params)
    spared = {name for name, p in engine.params.items() if decay[id(p)] == 0.0}
    if scope == "all":
        assert not spared
        return
    # Exactly the biases and the weights of normalisation layers (models.model_layers' "norm" group).
    norms = {name for layer in models.model_layers(model) if layer.group == "norm" for name in layer.params}
    biases = {name for name in engine.params if name.endswith(".bias")}
    assert spared == norms | biases and norms and biases
    assert all(decay[id(p)] == 0.5 for name, p in engine.params.items() if name not in spared)


def test_sgd_step_is_plain_gradient_descent(load_tiny, texts):
    settings = train.Settings(optimizer="sgd", lr=0.5, weight_decay=0.0, grad_clip=0.0)
    engine = train.TorchEngine(load_tiny(), settings, CPU)
    run = train.train_text(engine, "a", texts[0][:1], "1", settings)
    assert isinstance(engine.optimizer, torch.optim.SGD)

    model = load_tiny()
    ids = texts[0][0]
    model(input_ids=ids, labels=ids).loss.backward()
    expected = {name: (p - settings.lr * p.grad).detach() for name, p in model.named_parameters()}
    assert _max_diff(run.after, expected) < 1e-6
    # AdamW is the default and is not SGD.
    adam = train.TorchEngine(load_tiny(), train.Settings(), CPU)
    adam.reset()
    assert isinstance(adam.optimizer, torch.optim.AdamW)


def test_settings_from_config():
    settings = train.Settings.from_config({"lr": 1e-4, "betas": [0.8, 0.9], "optimizer": "sgd", "device": "cpu"})
    assert settings.lr == 1e-4 and settings.betas == (0.8, 0.9) and settings.optimizer == "sgd"
    assert settings.patience == train.Settings().patience


# ---------------------------------------------------------------- DeepSpeed


def test_deepspeed_state_to_come_counts_the_first_steps_allocations():
    """What a DeepSpeed rank allocates on the device at its first backward and step: the reduction
    bucket (of the module's dtype) and its shard of the gradients (module dtype and fp32) and of
    the moments; under ZeRO-Offload only the bucket."""
    zero = {"stage": 2, "reduce_bucket_size": 100}
    zero2 = {"zero_optimization": zero}
    offload = {"zero_optimization": {**zero, "offload_optimizer": {"device": "cpu"}}}
    adamw, sgd = train.Settings(), train.Settings(optimizer="sgd", momentum=0.9)
    # fp32, 1,000 parameters over 2 ranks: a bucket of 100 x 4 bytes, then 500 x (4 + 4 + 8) bytes.
    assert train.deepspeed_state_to_come(adamw, zero2, 4_000, 2) == 400 + 8_000
    assert train.deepspeed_state_to_come(sgd, zero2, 4_000, 1) == 400 + 12_000
    assert train.deepspeed_state_to_come(train.Settings(optimizer="sgd", momentum=0.0), zero2, 4_000, 1) == 8_400
    assert train.deepspeed_state_to_come(adamw, offload, 4_000, 1) == 400  # the rest in host memory
    # bf16: a 16-bit bucket and gradient shard; two buckets with overlap_comm, none without contiguous gradients.
    bf16 = train.Settings(precision="bf16")
    assert train.deepspeed_state_to_come(bf16, zero2, 4_000, 1) == 200 + 14_000
    overlap = {"zero_optimization": {**zero, "overlap_comm": True}}
    assert train.deepspeed_state_to_come(bf16, overlap, 4_000, 1) == 400 + 14_000
    scattered = {"zero_optimization": {**zero, "contiguous_gradients": False}}
    assert train.deepspeed_state_to_come(bf16, scattered, 4_000, 1) == 14_000
    # DeepSpeed's default bucket: 5e8 values.
    assert train.deepspeed_state_to_come(bf16, {"zero_optimization": {"stage": 2}}, 4_000, 1) == 1e9 + 14_000


def test_deepspeed_zero2_matches_torch_and_restores(load_tiny, texts, monkeypatch):
    """All DeepSpeed checks in one test: torch.distributed is initialised once per process."""
    pytest.importorskip("deepspeed")
    settings = train.Settings(lr=1e-3)
    config = train.deepspeed_config(REPO_DEEPSPEED_CONFIG, settings)
    assert config["zero_optimization"]["stage"] == 2
    assert config["train_micro_batch_size_per_gpu"] == 1 and config["gradient_clipping"] == settings.grad_clip
    assert not config["bf16"]["enabled"] and "optimizer" not in config

    engine = train.DeepSpeedEngine(load_tiny(), settings, CPU, config)
    torch_engine = train.TorchEngine(load_tiny(), settings, CPU)
    assert _equal(engine.base, torch_engine.base)

    a = train.train_text(engine, "a", texts[0], "3", settings)
    b = train.train_text(engine, "b", texts[1], "3", settings)
    b_torch = train.train_text(torch_engine, "b", texts[1], "3", settings)
    assert a.ok and b.ok and b_torch.ok
    assert not _equal(b.after, engine.base)
    assert _max_diff(b.after, b_torch.after) < 1e-6  # same optimizer, same data, same result
    assert b.losses == pytest.approx(b_torch.losses, rel=1e-6)

    b_again = train.train_text(engine, "b", texts[1], "3", settings)
    assert _equal(b_again.after, b.after)  # DeepSpeed's reset is exact too (A, B, B)

    # Early stopping that trains again to its best epoch (train.best_state replay): the state
    # that keeping it gives, bit for bit.
    es_keep = train.Settings(lr=0.3, schedule="constant", patience=2, max_epochs=12, min_delta=0.0, best_state="keep")
    kept = train.train_text(engine, "a", texts[0], "es", es_keep)
    replayed = train.train_text(
        engine, "a", texts[0], "es", train.Settings(**{**es_keep.__dict__, "best_state": "replay"})
    )
    assert 1 < replayed.best_epoch < replayed.epochs_run and replayed.replay_exact is True
    assert _equal(replayed.after, kept.after)

    # The loss scaler restarts with every text, as if text b had overflowed again and again
    # (fp16's scale, hysteresis and overflow counters live in it; DeepSpeed's fp16 cannot run
    # on a CPU without fp16 support in oneDNN, so the restart is checked on the scaler ZeRO
    # keeps in every precision).
    fresh_scale = engine.optimizer.loss_scaler.cur_scale
    engine.optimizer.loss_scaler.cur_scale = 2.0**-10
    b_fresh = train.train_text(engine, "b", texts[1], "3", settings)
    assert engine.optimizer.loss_scaler.cur_scale == fresh_scale
    assert _equal(b_fresh.after, b.after) and b_fresh.skipped_steps == 0

    engine.reset()
    assert _equal(engine.state(), engine.base)

    # bf16 compute: the module is bf16 but the master weights are the exact fp32 base.
    bf16 = train.Settings(lr=3e-5, precision="bf16")
    engine16 = train.DeepSpeedEngine(load_tiny(), bf16, CPU, train.deepspeed_config(REPO_DEEPSPEED_CONFIG, bf16))
    assert all(p.dtype == torch.bfloat16 for p in engine16.params.values())
    run16 = train.train_text(engine16, "a", texts[0], "1", bf16)
    assert run16.ok and all(t.dtype == torch.float32 for t in run16.after.values())
    engine16.reset()
    assert _equal(engine16.state(), engine16.base)
    assert _equal(engine16.base, torch_engine.base)

    # ZeRO-2 with the optimizer offloaded to CPU memory (the cluster config's engine).
    offload_config = train.deepspeed_config(REPO_OFFLOAD_CONFIG, settings)
    assert offload_config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    offloaded = train.DeepSpeedEngine(load_tiny(), settings, CPU, offload_config)
    b_offloaded = train.train_text(offloaded, "b", texts[1], "3", settings)
    assert _max_diff(b_offloaded.after, b_torch.after) < 1e-6

    # The base goes to the device only where it fits beside what the optimizer makes at its
    # first backward and step (one rank, AdamW: the reduction bucket, the gradient partitions and
    # two moments).
    # The base is held in the narrowest dtype exact for each tensor (train.base_dtype): the
    # LayerNorms' ones and zeros of a random initialisation in 16 bits.
    n = sum(t.numel() for t in engine.base.values())
    base_bytes = sum(t.numel() * t.element_size() for t in engine.base.values())
    assert base_bytes < 4 * n
    need = base_bytes + train.deepspeed_state_to_come(settings, config, 4 * n, 1)
    assert need == base_bytes + 5e8 * 4 + 16 * n
    for spare, fits in ((need - 1, False), (need + 1, True)):
        monkeypatch.setattr(train, "_spare_bytes", lambda device, spare=spare: spare)
        assert train.DeepSpeedEngine(load_tiny(), settings, CPU, config).base_on_device is fits
    monkeypatch.undo()

    # Replaying under ZeRO-Offload, whose digest is the module's weights (the master is on the host).
    kept_offloaded = train.train_text(offloaded, "a", texts[0], "es", es_keep)
    replayed = train.train_text(
        offloaded, "a", texts[0], "es", train.Settings(**{**es_keep.__dict__, "best_state": "replay"})
    )
    assert 1 < replayed.best_epoch < replayed.epochs_run and replayed.replay_exact is True
    assert _equal(replayed.after, kept_offloaded.after)

    # The offloaded optimizer stepped by DeepSpeed's CPU Adam (train.offload_adam): the same
    # deltas within float rounding, and each text from the exact base and a fresh state.
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    cpu_adam = train.Settings(lr=1e-3, offload_adam="deepspeed")
    ds_adam = train.DeepSpeedEngine(load_tiny(), cpu_adam, CPU, train.deepspeed_config(REPO_OFFLOAD_CONFIG, cpu_adam))
    assert isinstance(ds_adam.optimizer.optimizer, DeepSpeedCPUAdam)
    b_adam = train.train_text(ds_adam, "b", texts[1], "3", cpu_adam)
    assert 0 < _max_diff(b_adam.after, b_torch.after) < 1e-6
    moments = next(iter(ds_adam.optimizer.optimizer.state.values()))["exp_avg"]
    train.train_text(ds_adam, "a", texts[0], "3", cpu_adam)
    assert _equal(train.train_text(ds_adam, "b", texts[1], "3", cpu_adam).after, b_adam.after)
    # Its moments zeroed in place for every text, not freed and made again (host memory).
    assert next(iter(ds_adam.optimizer.optimizer.state.values()))["exp_avg"] is moments
    # It steps only an optimizer in host memory.
    with pytest.raises(ValueError, match="offload_adam"):
        train.DeepSpeedEngine(load_tiny(), cpu_adam, CPU, train.deepspeed_config(REPO_DEEPSPEED_CONFIG, cpu_adam))


def test_a_job_given_gpus_trains_on_them_or_fails_saying_so(monkeypatch):
    """train.device 'auto' means the GPU in a job given GPUs: never a silent fall back to its CPUs."""
    assert train.job_device("auto", 2) == "cuda" and train.job_device("auto", 0) == "auto"
    assert train.job_device("cpu", 1) == "cpu" and train.job_device("cuda", 0) == "cuda"
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match=r"no CUDA device is visible to it \(CUDA_VISIBLE_DEVICES=''\)"):
        train.pick_device(train.job_device("auto", 1))
    assert train.pick_device("auto").type == "cpu"


def test_a_state_with_a_non_finite_weight_fails_its_text():
    """The last step can blow a weight up while the loss it came from is finite: the text fails."""
    finite = {"a": torch.ones(3), "b": torch.zeros(2, 2)}
    run = train.TextRun(text_id="t", n_tokens=4, n_chunks=1, budget="2", losses=[1.0, 0.5], best_epoch=2, after=finite)
    train._fail_if_not_finite(run)
    assert run.ok and run.after is finite
    run.after = {**finite, "b": torch.tensor([[0.0, float("inf")], [1.0, 2.0]])}
    train._fail_if_not_finite(run)
    assert not run.ok and run.after is None and run.failed_epoch == 2
    assert run.failure == "non-finite parameters after epoch 2"


def test_deepspeeds_cpu_adam_builds_per_cpu_type_unless_told_where(monkeypatch):
    """CPU Adam is compiled for the CPU it builds on: without TORCH_EXTENSIONS_DIR each CPU type
    gets a directory of its own under torch's default; a directory the user set is kept."""
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    train.extensions_dir_for_this_cpu()
    chosen = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    assert chosen.name.startswith("cpu-") and len(chosen.name) == 16 and chosen.parent.name.startswith("py")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/somewhere/shared")
    train.extensions_dir_for_this_cpu()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == "/somewhere/shared"


def test_a_lock_left_by_a_killed_cpu_adam_build_is_removed(monkeypatch, tmp_path):
    """torch builds an extension under a lock file that a killed build leaves behind, and a later
    build waits on it forever: one older than any build takes is removed, with a warning; a
    younger one is a build under way and stays."""
    from deepspeed.ops.op_builder import CPUAdamBuilder
    from torch.utils.cpp_extension import _get_build_directory

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    # The lock torch's build of DeepSpeed's CPU Adam waits on (FileBaton in its build directory).
    lock = Path(_get_build_directory(CPUAdamBuilder().name, False)) / "lock"
    assert lock == tmp_path / "cpu_adam" / "lock"
    lock.touch()
    train.clear_stale_build_lock("cpu_adam")
    assert lock.exists()  # a build under way
    old = time.time() - train.STALE_BUILD_LOCK_S - 60
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match=r"removed .*cpu_adam/lock: left 31 minutes ago"):
        train.clear_stale_build_lock("cpu_adam")
    assert not lock.exists() and not list(lock.parent.glob("lock.stale-*"))
    train.clear_stale_build_lock("cpu_adam")  # nothing there: nothing to do
    # Another job's build made a fresh lock between this job's look and its taking the old one:
    # the fresh one goes back, and its build is waited for.
    lock.touch()
    os.utime(lock, (old, old))
    rename = os.rename

    def rename_a_fresh_one(source, target):
        rename(source, target)
        os.utime(target)  # what was taken is a lock made just now

    with monkeypatch.context() as patch, warnings.catch_warnings():
        patch.setattr(train.os, "rename", rename_a_fresh_one)
        warnings.simplefilter("error")
        train.clear_stale_build_lock("cpu_adam")
    assert lock.exists() and time.time() - lock.stat().st_mtime < 60
    assert not list(lock.parent.glob("lock.stale-*"))
    # The same where the filesystem has no hard links: renamed back.
    os.utime(lock, (old, old))

    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    with monkeypatch.context() as patch:
        patch.setattr(train.os, "rename", rename_a_fresh_one)
        patch.setattr(train.os, "link", no_links)
        train.clear_stale_build_lock("cpu_adam")
    assert lock.exists() and not list(lock.parent.glob("lock.stale-*"))
    # A stale lock this job may not remove: a message that says so and what to do, before any build.
    os.utime(lock, (old, old))

    def refused(source, target):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(train.os, "rename", refused)
        with pytest.raises(RuntimeError, match=r"cpu_adam/lock was left 31 minutes ago .* remove it by hand"):
            train.clear_stale_build_lock("cpu_adam")
