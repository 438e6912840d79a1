"""The blind bag-of-words baseline: it finds a distribution shift, and nothing where there is none."""

import numpy as np
import pytest

from paramdelta import corpus, metrics
from paramdelta.attacks import blind_scores


@pytest.fixture(scope="module")
def documents():
    return corpus.generate_corpus(200, 3)


def test_distinctive_word_is_found(documents):
    labels = np.r_[np.ones(100, dtype=int), np.zeros(100, dtype=int)]
    texts = [f"{text} zephyr" if label else text for text, label in zip(documents, labels)]
    scores = blind_scores(texts, labels)
    assert scores.shape == (200,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert metrics.auroc(labels, scores) > 0.98


def test_partial_shift_is_partly_found(documents):
    # Half of the members carry the word: the best possible AUROC is 0.75.
    labels = np.r_[np.ones(100, dtype=int), np.zeros(100, dtype=int)]
    texts = [f"{text} zephyr" if i < 50 else text for i, text in enumerate(documents)]
    assert 0.58 < metrics.auroc(labels, blind_scores(texts, labels)) <= 0.75


def test_random_labels_give_chance(documents):
    # Fitted and scored on the same texts, the classifier would memorise random labels
    # (AUROC near 1); out of fold it cannot.
    labels = np.random.default_rng(0).permutation(np.r_[np.ones(100, dtype=int), np.zeros(100, dtype=int)])
    assert abs(metrics.auroc(labels, blind_scores(documents, labels)) - 0.5) < 0.12


def test_folds_are_seeded(documents):
    labels = np.r_[np.ones(20, dtype=int), np.zeros(20, dtype=int)]
    first = blind_scores(documents[:40], labels, seed=0)
    np.testing.assert_array_equal(first, blind_scores(documents[:40], labels, seed=0))
    assert not np.array_equal(first, blind_scores(documents[:40], labels, seed=1))


def test_blind_needs_enough_of_each_class(documents):
    with pytest.raises(ValueError, match="at least n_folds"):
        blind_scores(documents[:10], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="labels"):
        blind_scores(documents[:10], [2] * 10)
