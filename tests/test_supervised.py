"""The supervised classifiers on per-layer changes: they learn per-layer directions that a mean
over layers cancels, and every score is out of fold."""

import numpy as np
import pandas as pd
import pytest

from paramdelta import features, supervised
from paramdelta.metrics import auroc


def delta_table(n_texts=120, seed=0):
    """Two layers: members move `attn` less and `mlp` more, by the same amount, so the mean
    of the normalised changes over both layers carries no signal."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_texts) % 2
    rows = []
    for text, label in enumerate(labels):
        for layer, group, shift in [("attn", "attention", -1.0), ("mlp", "mlp", 1.0)]:
            l2 = 5.0 + shift * label + rng.normal(scale=0.5)
            rows.append(dict(text_id=f"t{text:03d}", label=int(label), layer=layer, layer_index=0 if layer == "attn" else 1,
                             group=group, block=0, l2=l2, sq=l2**2, topk_l2_1=l2 / 3))  # fmt: skip
    return features.normalise(pd.DataFrame(rows))


@pytest.mark.parametrize("classifier", supervised.CLASSIFIERS)
def test_a_classifier_learns_layer_directions_that_the_mean_cancels(classifier):
    table = delta_table()
    unsupervised = features.select_score(table, "all")
    labels = table.drop_duplicates("text_id").set_index("text_id")["label"]
    assert abs(auroc(labels.reindex(unsupervised.index), unsupervised) - 0.5) < 0.1
    scores = supervised.supervised_table(table, [classifier], folds=5, seed=0)
    assert scores["method"].unique().tolist() == [f"supervised-{classifier}"]
    assert scores["selection"].isna().all() and scores["k"].isna().all()
    assert auroc(scores["label"], scores["score"]) > 0.9  # higher = member


def test_scores_are_out_of_fold():
    # Labels unrelated to the changes: a classifier scored on its own training texts would
    # separate them (a forest fits them nearly perfectly); out of fold it is near chance.
    table = delta_table(seed=1)
    shuffled = dict(zip(sorted(table["text_id"].unique()), np.random.default_rng(5).permutation(np.arange(120) % 2)))
    table["label"] = table["text_id"].map(shuffled)
    for classifier in supervised.CLASSIFIERS:
        scores = supervised.supervised_table(table, [classifier], folds=5, seed=0)
        assert abs(auroc(scores["label"], scores["score"]) - 0.5) < 0.15, classifier


def test_the_training_setting_names_the_method_and_results_repeat():
    table = delta_table()
    first = supervised.supervised_table(table, ["logistic", "forest"], optimizer="sgd", folds=5, seed=3)
    again = supervised.supervised_table(table, ["logistic", "forest"], optimizer="sgd", folds=5, seed=3)
    assert sorted(first["method"].unique()) == ["supervised-forest:sgd", "supervised-logistic:sgd"]
    pd.testing.assert_frame_equal(first, again)


def test_features_are_every_normalised_statistic_of_every_layer():
    wide = supervised.layer_features(delta_table(n_texts=10))
    assert wide.shape == (10, 4)
    assert sorted(wide.columns) == ["l2_norm:attn", "l2_norm:mlp", "topk_l2_1_norm:attn", "topk_l2_1_norm:mlp"]
    with pytest.raises(ValueError, match="normalise"):
        supervised.layer_features(delta_table(n_texts=10)[["text_id", "layer", "l2"]])


def test_too_few_texts_of_a_class_for_the_folds_is_an_error():
    with pytest.raises(ValueError, match="at least 5 texts"):
        supervised.supervised_table(delta_table(n_texts=8), ["logistic"], folds=5)
