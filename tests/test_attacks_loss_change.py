"""The one-step loss change, read from the per-text training records."""

import numpy as np
import pandas as pd
import pytest

from paramdelta.attacks.loss_change import loss_change_scores
from paramdelta.metrics import auroc


def record(losses, labels, status=None):
    return pd.DataFrame(
        {
            "text_id": [f"t{i}" for i in range(len(losses))],
            "label": labels,
            "status": status or ["ok"] * len(losses),
            "losses": losses,
        }
    )


def test_the_score_is_minus_the_fall_of_the_first_step():
    texts = record([[3.0, 2.5, 2.4], [2.0, 1.9], [4.0, 3.0, 2.0]], [0, 1, 0])
    scores = loss_change_scores(texts, method="loss-change:sgd")
    assert scores["score"].tolist() == pytest.approx([-0.5, -0.1, -1.0])
    assert (scores["method"] == "loss-change:sgd").all() and scores["selection"].isna().all()
    assert scores["label"].tolist() == [0, 1, 0]


def test_failed_texts_and_single_epochs_have_no_score():
    texts = record([[3.0, 2.5], [2.0, float("nan")], [4.0]], [0, 1, 0], status=["ok", "failed", "ok"])
    assert loss_change_scores(texts)["text_id"].tolist() == ["t0"]


def test_members_that_fall_less_score_higher():
    # Members: learned already, their loss falls little on a step; non-members fall more.
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 2
    falls = np.where(labels == 1, 0.05, 0.15) + 0.03 * rng.normal(size=100)
    texts = record([[3.0, 3.0 - fall] for fall in falls], labels)
    scores = loss_change_scores(texts)
    assert auroc(scores["label"], scores["score"]) > 0.95


def test_a_record_without_losses_is_an_error():
    with pytest.raises(ValueError, match="losses"):
        loss_change_scores(record([[1.0, 0.5]], [1]).drop(columns="losses"))
