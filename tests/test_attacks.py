"""Log-probability attacks: hand-computed scores, the shared forward pass, batching, orientation."""

import numpy as np
import pandas as pd
import pytest
import torch

from paramdelta import corpus, metrics, models, target
from paramdelta.attacks import (
    ATTACKS,
    K_GRID,
    SCORE_COLUMNS,
    Document,
    TokenStats,
    dc_pdd,
    fsd,
    pac,
    recall,
    samia_scores,
    score_texts,
    token_stats,
)
from paramdelta.attacks.base import lowest_fraction_mean
from paramdelta.attacks.forward import eval_mode


def stats(log_probs, mu=None, sigma=None) -> TokenStats:
    log_probs = np.asarray(log_probs, dtype=float)
    mu = np.zeros_like(log_probs) if mu is None else np.asarray(mu, dtype=float)
    sigma = np.ones_like(log_probs) if sigma is None else np.asarray(sigma, dtype=float)
    return TokenStats(np.arange(len(log_probs) + 1), log_probs, mu, sigma)


def score(name, document, k=None):
    return ATTACKS[name].score(document, k)


# Hand-computed scores.


def test_loss_is_minus_mean_nll():
    assert score("loss", Document("x", stats([-1.0, -2.0, -3.0]))) == pytest.approx(-2.0)


def test_zlib_divides_by_compressed_length():
    # zlib.compress(b"Membership inference on language models.") is 48 bytes (default level).
    text = "Membership inference on language models."
    assert score("zlib", Document(text, stats([-1.0, -2.0, -3.0]))) == pytest.approx(-2.0 / 48)


def test_zlib_ranks_repetitive_text_lower_at_equal_loss():
    # "abab..." (20 bytes) compresses to 12 bytes: the same loss is less surprising there.
    repetitive = score("zlib", Document("ab" * 10, stats([-2.0])))
    varied = score("zlib", Document("Membership inference on language models.", stats([-2.0])))
    assert repetitive == pytest.approx(-2.0 / 12)
    assert repetitive < varied


def test_lowercase_ratio():
    document = Document("Abc", stats([-1.0, -3.0]), lowercase=stats([-4.0, -4.0]))
    assert score("lowercase", document) == pytest.approx(-(2.0 / 4.0))


def test_reference_difference():
    document = Document("x", stats([-2.0, -2.0]), reference=stats([-3.0, -3.0, -3.0]))
    assert score("ref", document) == pytest.approx(1.0)


@pytest.mark.parametrize(("k", "expected"), [(50, -3.5), (5, -4.0), (25, -4.0), (60, -3.5), (75, -3.0), (100, -2.5)])
def test_mink_hand_values(k, expected):
    # Lowest n = max(1, floor(k% of 4)) of [-1, -2, -3, -4].
    assert score("mink", Document("x", stats([-1.0, -2.0, -3.0, -4.0])), k) == pytest.approx(expected)


def test_mink_keeps_at_least_one_token():
    assert score("mink", Document("x", stats([-0.5, -7.0])), 5) == pytest.approx(-7.0)


def test_lowest_fraction_uses_floor():
    values = np.arange(10.0)
    assert lowest_fraction_mean(values, 30) == pytest.approx(1.0)  # 3 values: 0, 1, 2
    assert lowest_fraction_mean(values, 39) == pytest.approx(1.0)  # floor(3.9) = 3
    with pytest.raises(ValueError):
        lowest_fraction_mean(values, 0)


def test_minkpp_hand_values():
    # (log p - mu) / sigma = [(-1 + 1.5) / 0.5, (-2 + 1) / 2, (-3 + 2) / 1, (-4 + 2) / 4] = [1, -0.5, -1, -0.5]
    document = Document("x", stats([-1.0, -2.0, -3.0, -4.0], mu=[-1.5, -1.0, -2.0, -2.0], sigma=[0.5, 2.0, 1.0, 4.0]))
    assert score("minkpp", document, 50) == pytest.approx(-0.75)
    assert score("minkpp", document, 5) == pytest.approx(-1.0)
    assert score("minkpp", document, 100) == pytest.approx(-0.25)


def test_minkpp_one_hot_distribution_is_finite():
    assert score("minkpp", Document("x", stats([0.0, -1.0], mu=[0.0, -1.0], sigma=[0.0, 0.5])), 100) == 0.0


def test_k_attacks_need_k():
    with pytest.raises(ValueError, match="needs k"):
        score("mink", Document("x", stats([-1.0])))


def test_dcpdd_hand_values():
    # Tokens 1 2 1 3 after a first token 0: the repeated 1 is not counted.
    document = Document(
        "text",
        TokenStats(np.array([0, 1, 2, 1, 3]), np.log([0.5, 0.001, 0.9, 0.002])),
        frequencies=np.array([0.1, np.exp(-2.0), np.exp(-3.0), np.exp(-1.0)]),
    )
    # alpha = p * log(1/f): 0.5 * 2 = 1 (clipped to 0.01), 0.001 * 3, 0.002 * 1.
    assert score("dcpdd", document) == pytest.approx((0.01 + 0.003 + 0.002) / 3)


def test_dcpdd_frequencies_are_laplace_smoothed_counts(tiny_tokenizer):
    frequencies = dc_pdd.token_frequencies(tiny_tokenizer, ["the the", "a"])
    assert frequencies.shape == (len(tiny_tokenizer),)
    assert frequencies.sum() == pytest.approx(1.0)
    ids = tiny_tokenizer("the the")["input_ids"] + tiny_tokenizer("a")["input_ids"]
    counts = np.bincount(ids, minlength=len(tiny_tokenizer))
    np.testing.assert_allclose(frequencies, (counts + 1) / (len(ids) + len(tiny_tokenizer)))


def test_pac_polarized_distance_hand_values():
    log_probs = -np.arange(20, dtype=float)  # 0, -1, ..., -19
    # Top 5% (one token): 0; bottom 30% (six tokens): -14 .. -19, mean -16.5.
    assert pac.polarized_distance(log_probs) == pytest.approx(16.5)


def test_pac_copies_swap_words_reproducibly_whatever_the_other_texts():
    text = "one two three four five six seven eight nine ten"
    copies = pac.swapped_copies(text, n=5, ratio=0.3, seed=0)
    assert len(copies) == 5 and all(sorted(copy.split()) == sorted(text.split()) for copy in copies)
    assert any(copy != text for copy in copies)
    assert copies == pac.swapped_copies(text, n=5, ratio=0.3, seed=0)
    assert copies != pac.swapped_copies(text, n=5, ratio=0.3, seed=1)
    assert pac.swapped_copies("single", n=2) == ["single", "single"]


def test_recall_shots_are_labelled_nonmembers_drawn_whatever_the_order():
    ids, labels = list("abcdefgh"), [1, 0, 1, 0, 0, 1, 0, 0]
    chosen = [ids[i] for i in recall.choose_shots(ids, labels, 2, seed=0)]
    assert all(labels[ids.index(c)] == 0 for c in chosen)
    reversed_ids = ids[::-1]
    assert sorted(reversed_ids[i] for i in recall.choose_shots(reversed_ids, labels[::-1], 2, seed=0)) == sorted(chosen)
    with pytest.raises(ValueError, match="ReCaLL needs more than 5 labelled non-members"):
        recall.choose_shots(ids, labels, 5, seed=0)


def test_registry_names_match_keys():
    assert list(ATTACKS) == ["loss", "zlib", "lowercase", "ref", "mink", "minkpp", "dcpdd"]
    assert all(attack.name == name for name, attack in ATTACKS.items())
    assert {name for name, attack in ATTACKS.items() if attack.uses_k} == {"mink", "minkpp"}


# The shared forward pass.

TINY = dict(hidden_size=32, num_layers=2, num_heads=4, max_positions=256)


def tiny_model(tokenizer, seed=0, arch="gpt-neox"):
    config = models.tiny_config(
        arch,
        len(tokenizer),
        **TINY,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return models.build_model(config, seed)


@pytest.fixture(scope="module")
def texts():
    """Documents of different lengths (100-210 tokens), so that batches are padded."""
    return corpus.generate_corpus(8, 1)


@pytest.fixture(scope="module")
def short_texts():
    """Texts of 3-14 words, short enough for the 64-position models of every architecture."""
    return [" ".join(document.split()[: 3 + 3 * i]) for i, document in enumerate(corpus.generate_corpus(5, 2))]


def direct_stats(model, tokenizer, text, ids=None):
    """Unbatched reference computation, written out as the Min-K%++ authors' code does."""
    ids = torch.tensor([tokenizer(text)["input_ids"] if ids is None else ids])
    with eval_mode(model):
        log_p = model(ids).logits[0, :-1].double().log_softmax(-1)
    p = log_p.exp()
    mu = (p * log_p).sum(-1)
    sigma = ((p * log_p.square()).sum(-1) - mu.square()).sqrt()
    return log_p.gather(-1, ids[0, 1:, None]).squeeze(-1).numpy(), mu.numpy(), sigma.numpy()


def test_token_stats_match_direct_computation(arch_model, tiny_tokenizer, short_texts, single_thread):
    batched = token_stats(arch_model, tiny_tokenizer, short_texts, batch_size=3)
    for text, result in zip(short_texts, batched):
        log_probs, mu, sigma = direct_stats(arch_model, tiny_tokenizer, text)
        assert result.token_ids.tolist() == tiny_tokenizer(text)["input_ids"]
        np.testing.assert_allclose(result.log_probs, log_probs, atol=1e-5)
        np.testing.assert_allclose(result.mu, mu, atol=1e-5)
        np.testing.assert_allclose(result.sigma, sigma, atol=1e-5)


def test_token_stats_of_saved_model(load_tiny, saved_tokenizer, short_texts, single_thread):
    model = load_tiny()
    result = token_stats(model, saved_tokenizer, short_texts, batch_size=2)
    assert model.training, "the model's training flag is restored"
    for text, text_stats in zip(short_texts, result):
        np.testing.assert_allclose(text_stats.log_probs, direct_stats(model, saved_tokenizer, text)[0], atol=1e-5)


def test_token_stats_without_moments(tiny_tokenizer, short_texts, single_thread):
    model = tiny_model(tiny_tokenizer)
    full = token_stats(model, tiny_tokenizer, short_texts)
    light = token_stats(model, tiny_tokenizer, short_texts, moments=False)
    for with_moments, without in zip(full, light):
        np.testing.assert_array_equal(with_moments.log_probs, without.log_probs)
        assert without.mu is None and without.sigma is None
    with pytest.raises(ValueError, match="mu and sigma"):
        score("minkpp", Document(short_texts[0], light[0]), 10)


def test_long_text_is_scored_over_the_chunks_training_uses(tiny_tokenizer, single_thread):
    """A text longer than the context runs as training's chunks, each a sequence of its own."""
    from paramdelta.train import chunk

    model = tiny_model(tiny_tokenizer)
    long_text = " ".join(f"word{i % 37}" for i in range(600))
    ids = tiny_tokenizer(long_text)["input_ids"]
    context = TINY["max_positions"]
    assert len(ids) > context
    (result,) = token_stats(model, tiny_tokenizer, [long_text])
    pieces = chunk(ids, context)
    assert len(pieces) > 1
    expected = [direct_stats(model, tiny_tokenizer, None, ids=piece[0].tolist())[0] for piece in pieces]
    np.testing.assert_allclose(result.log_probs, np.concatenate(expected), atol=1e-5)
    assert len(result.log_probs) == len(ids) - len(pieces)
    np.testing.assert_array_equal(result.token_ids, ids)
    # A smaller window (train.max_length) chunks a shorter text the same way.
    (windowed,) = token_stats(model, tiny_tokenizer, [long_text], max_length=16)
    assert len(windowed.log_probs) == len(ids) - len(chunk(ids, 16))
    table = score_texts(model, tiny_tokenizer, [long_text, "a short text here"], ["loss", "mink"], ks=[20])
    assert table.score.notna().all()


def test_token_stats_rejects_unscorable_texts(tiny_tokenizer, single_thread):
    model = tiny_model(tiny_tokenizer)
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        token_stats(model, tiny_tokenizer, ["a long enough text", ""])


def test_batched_scores_equal_unbatched(tiny_tokenizer, texts, single_thread):
    model = tiny_model(tiny_tokenizer)
    reference = (tiny_model(tiny_tokenizer, seed=1), tiny_tokenizer)
    batched = score_texts(model, tiny_tokenizer, texts, batch_size=4, reference=reference)
    alone = score_texts(model, tiny_tokenizer, texts, batch_size=1, reference=reference)
    pd.testing.assert_frame_equal(batched.drop(columns="score"), alone.drop(columns="score"))
    np.testing.assert_allclose(batched["score"], alone["score"], rtol=0, atol=1e-5)


def test_score_table_layout(tiny_tokenizer, texts, single_thread):
    model = tiny_model(tiny_tokenizer)
    ids = [f"t{i}" for i in range(len(texts))]
    table = score_texts(model, tiny_tokenizer, texts, text_ids=ids)
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert set(table["method"]) == {"loss", "zlib", "lowercase", "mink", "minkpp"}, "ref only with a reference"
    for method, rows in table.groupby("method"):
        ks = sorted(rows["k"].dropna().unique())
        assert ks == (list(K_GRID) if ATTACKS[method].uses_k else [])
        assert rows.groupby("k", dropna=False)["text_id"].apply(list).map(lambda got: got == ids).all()
    assert np.isfinite(table["score"]).all()
    loss = table[table.method == "loss"].set_index("text_id")["score"]
    expected = [-token_stats(model, tiny_tokenizer, [text])[0].nll for text in texts]
    np.testing.assert_allclose(loss.loc[ids], expected, atol=1e-6)


def test_attack_selection_errors(tiny_tokenizer, texts):
    model = tiny_model(tiny_tokenizer)
    with pytest.raises(ValueError, match="unknown attacks"):
        score_texts(model, tiny_tokenizer, texts, ["loss", "gradnorm"])
    with pytest.raises(ValueError, match="reference"):
        score_texts(model, tiny_tokenizer, texts, ["ref"])


class ForwardCounter:
    """Counts the texts (batch rows) that go through a model's forward."""

    def __init__(self, model):
        self.rows = 0
        model.register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, output):
        self.rows += kwargs["input_ids"].shape[0]


@pytest.mark.parametrize(("attacks", "passes"), [(["loss", "zlib", "mink", "minkpp"], 1), (None, 2)])
def test_one_forward_pass_per_text(tiny_tokenizer, texts, attacks, passes, single_thread):
    model = tiny_model(tiny_tokenizer)
    counter = ForwardCounter(model)
    score_texts(model, tiny_tokenizer, texts, attacks, batch_size=3)
    assert counter.rows == passes * len(texts)  # the second pass: lowercased texts


# Orientation: a model that memorised four texts must score them above four unseen ones.


@pytest.fixture(scope="module")
def memorised(tiny_tokenizer, texts, single_thread):
    """(base model, the base continually trained on texts[:4] until their loss is low)."""
    base = tiny_model(tiny_tokenizer)
    trained = tiny_model(tiny_tokenizer)
    losses = target.pretrain(
        trained, tiny_tokenizer, texts[:4], epochs=150, lr=1e-2, batch_size=4, seed=0, max_length=256
    )
    assert losses[-1] < 0.1
    return base, trained


LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


def test_every_attack_ranks_members_first(memorised, tiny_tokenizer, texts):
    base, trained = memorised
    frequencies = dc_pdd.token_frequencies(tiny_tokenizer, texts)
    table = score_texts(
        trained, tiny_tokenizer, texts, reference=(base, tiny_tokenizer), frequencies=frequencies, batch_size=4
    )
    assert set(table["method"]) == set(ATTACKS)
    for (method, k), rows in table.groupby(["method", "k"], dropna=False):
        assert metrics.auroc(LABELS, rows["score"].to_numpy()) == 1.0, (method, k)


def test_samia_ranks_members_first(memorised, tiny_tokenizer, texts):
    table = samia_scores(memorised[1], tiny_tokenizer, texts, n_samples=10, batch_size=8)
    assert set(table["method"]) == {"samia", "samia-zlib"}
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert table["k"].isna().all()
    for method, rows in table.groupby("method"):
        assert metrics.auroc(LABELS, rows["score"].to_numpy()) == 1.0, method


def test_samia_is_reproducible_and_independent_of_batch_and_order(memorised, tiny_tokenizer, texts):
    trained = memorised[1]
    ids = list("abcdefgh")
    batched = samia_scores(trained, tiny_tokenizer, texts, n_samples=4, batch_size=8, text_ids=ids)
    reordered = samia_scores(trained, tiny_tokenizer, texts[::-1], n_samples=4, batch_size=3, text_ids=ids[::-1])
    key = ["method", "text_id"]
    pd.testing.assert_frame_equal(
        batched.sort_values(key).reset_index(drop=True), reordered.sort_values(key).reset_index(drop=True)
    )
    other_seed = samia_scores(trained, tiny_tokenizer, texts, n_samples=4, seed=1, batch_size=8, text_ids=ids)
    assert not np.allclose(batched["score"], other_seed["score"])


def test_pac_ranks_members_first(memorised, tiny_tokenizer, texts):
    table = pac.pac_scores(memorised[1], tiny_tokenizer, texts, list(range(8)), batch_size=4)
    assert list(table.columns) == list(SCORE_COLUMNS) and (table["method"] == "pac").all()
    assert metrics.auroc(LABELS, table["score"].to_numpy()) == 1.0


def test_recall_ranks_members_first_and_does_not_score_its_shots(memorised, tiny_tokenizer, texts):
    table = recall.recall_scores(memorised[1], tiny_tokenizer, texts, list(range(8)), LABELS, shots=1)
    shot = recall.choose_shots(list(range(8)), LABELS, 1, seed=0)[0]
    assert LABELS[shot] == 0 and shot not in set(table["text_id"]) and len(table) == 7
    labels = [LABELS[i] for i in table["text_id"]]
    assert metrics.auroc(labels, table["score"].to_numpy()) == 1.0


def test_recall_is_the_ratio_of_conditioned_to_plain_log_likelihood(memorised, tiny_tokenizer, texts):
    trained = memorised[1]
    short = [" ".join(text.split()[:12]) for text in texts]
    table = recall.recall_scores(trained, tiny_tokenizer, short, list(range(8)), LABELS, shots=1).set_index("text_id")
    shot = recall.choose_shots(list(range(8)), LABELS, 1, seed=0)[0]
    prefix = tiny_tokenizer(short[shot] + "\n\n")["input_ids"]
    ids = tiny_tokenizer(short[0])["input_ids"]
    with eval_mode(trained):
        alone = trained(torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
        joined = trained(torch.tensor([prefix + ids])).logits[0, len(prefix) : -1].double().log_softmax(-1)
    plain = alone.gather(-1, torch.tensor(ids[1:])[:, None]).mean()
    conditioned = joined.gather(-1, torch.tensor(ids[1:])[:, None]).mean()
    assert table.at[0, "score"] == pytest.approx(float(conditioned / plain), rel=1e-5)


def test_fsd_ranks_members_first_leaves_the_model_alone_and_does_not_score_its_texts(memorised, tiny_tokenizer, texts):
    trained = memorised[1]
    before = {name: p.detach().clone() for name, p in trained.named_parameters()}
    table = fsd.fsd_scores(trained, tiny_tokenizer, texts, list(range(8)), LABELS, n_texts=2, epochs=3, lr=1e-3)
    assert all(torch.equal(p, before[name]) for name, p in trained.named_parameters())
    tuned_on = recall.choose_shots(list(range(8)), LABELS, 2, seed=0, attack="FSD")
    assert len(table) == 6 and not set(tuned_on) & set(table["text_id"])
    assert (table["method"] == "fsd").all()
    labels = [LABELS[i] for i in table["text_id"]]
    assert metrics.auroc(labels, table["score"].to_numpy()) == 1.0
