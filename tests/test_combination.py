"""The param-delta score combined with the best black-box attack: everything that looks at
the labels is chosen on the other folds."""

import numpy as np
import pandas as pd
import pytest

from paramdelta.combination import combined_scores
from paramdelta.metrics import auroc


def score_rows(method, scores, labels, *, budget="10", selection=None, k=np.nan, model="m"):
    return pd.DataFrame(
        {
            "dataset": "d",
            "model": model,
            "budget": budget,
            "text_id": [f"t{i:03d}" for i in range(len(labels))],
            "label": labels,
            "method": method,
            "selection": selection,
            "k": k,
            "score": scores,
        }
    )


def run(n=200, seed=0, shuffle_labels=False):
    """param-delta (all layers) inverted under sgd, a loss attack that carries the other half of
    the signal, a useless attack, a perfect blind baseline and a supervised score (neither is a
    candidate)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    signal = labels - 0.5
    blocks = [
        score_rows("param-delta", rng.normal(size=n) + 1.2 * signal, labels, selection="all"),
        score_rows("param-delta:sgd", rng.normal(size=n) - 1.2 * signal, labels, selection="all"),
        score_rows("param-delta", rng.normal(size=n), labels, selection="topk-elements", k=5.0),
        score_rows("loss", rng.normal(size=n) + 1.2 * signal, labels, budget="-"),
        score_rows("mink", rng.normal(size=n), labels, budget="-", k=20.0),
        score_rows("blind", labels.astype(float), labels, budget="-"),
        score_rows("supervised-logistic", labels.astype(float), labels),
    ]
    scores = pd.concat(blocks, ignore_index=True)
    if shuffle_labels:
        shuffled = dict(zip(sorted(scores["text_id"].unique()), rng.permutation(labels)))
        scores["label"] = scores["text_id"].map(shuffled)
    return scores


def test_the_combination_beats_each_of_its_parts_and_learns_the_direction():
    scores = run()
    combined = combined_scores(scores, folds=5, seed=0)
    assert sorted(combined["method"].unique()) == [
        "combined-logistic", "combined-logistic:sgd", "combined-rank", "combined-rank:sgd",
    ]  # fmt: skip
    assert combined["selection"].isna().all() and (combined["budget"] == "10").all()
    loss = scores[scores["method"] == "loss"]
    alone = auroc(loss["label"], loss["score"])
    for method, rows in combined.groupby("method"):
        assert len(rows) == 200
        # Higher = member, the inverted sgd score included.
        assert auroc(rows["label"], rows["score"]) > alone + 0.05, method


def test_the_combination_is_out_of_fold():
    # Labels unrelated to every score, the blind and supervised ones aside: chance.
    combined = combined_scores(run(shuffle_labels=True), folds=5, seed=0)
    for method, rows in combined.groupby("method"):
        assert abs(auroc(rows["label"], rows["score"]) - 0.5) < 0.12, method


def test_nothing_to_combine_without_black_box_attacks_or_with_too_few_texts():
    scores = run()
    assert combined_scores(scores[scores["budget"] != "-"]).empty
    few = scores[scores["text_id"] < "t008"]  # 4 texts of each label
    assert combined_scores(few, folds=5).empty
    assert not combined_scores(few, folds=4).empty


def test_results_repeat_with_the_seed():
    first = combined_scores(run(), folds=5, seed=3)
    pd.testing.assert_frame_equal(first, combined_scores(run(), folds=5, seed=3))
    assert not np.allclose(first["score"], combined_scores(run(), folds=5, seed=4)["score"])


@pytest.mark.parametrize("method", ["combined-rank", "supervised-forest:sgd"])
def test_learned_methods_are_not_candidates(method):
    scores = pd.concat([run(), score_rows(method, np.arange(200) % 2, np.arange(200) % 2, budget="-")])
    # A perfect "black-box" score with a learned method's name must not be picked.
    combined = combined_scores(scores, folds=5, seed=0)
    rank = combined[combined["method"] == "combined-rank"]
    assert auroc(rank["label"], rank["score"]) < 0.95
