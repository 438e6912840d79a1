"""GradNorm: minus the gradient norm of a text's loss, over all parameters and per layer group."""

import numpy as np
import pytest
import torch

from paramdelta import models
from paramdelta.attacks.gradnorm import gradnorm_scores
from paramdelta.train import chunk


def test_matches_a_direct_backward_pass(load_tiny, saved_tokenizer, sample_texts):
    model = load_tiny()
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    scores = gradnorm_scores(model, saved_tokenizer, sample_texts[:2], ["a", "b"])
    groups = sorted({layer.group for layer in models.model_layers(model)})
    assert sorted(scores["selection"].unique()) == sorted(["all", *groups])
    assert (scores["method"] == "gradnorm").all() and scores["k"].isna().all()
    # The same gradient by hand, for the first text: longer than the context, so the mean loss of
    # the chunks training uses.
    ids = saved_tokenizer(sample_texts[0])["input_ids"]
    pieces = chunk(ids, models.context_length(model))
    assert len(pieces) > 1
    model.eval()
    (sum(model(input_ids=piece, labels=piece).loss for piece in pieces) / len(pieces)).backward()
    total = np.sqrt(sum(float(p.grad.double().square().sum()) for p in model.parameters()))
    first = scores[scores["text_id"] == "a"].set_index("selection")["score"]
    assert first["all"] == pytest.approx(-total, rel=1e-5)
    # The groups split the total.
    assert np.sqrt(sum(first[group] ** 2 for group in groups)) == pytest.approx(total, rel=1e-9)
    # The parameters are untouched (the hand-made gradient above aside).
    assert all(torch.equal(param, before[name]) for name, param in model.named_parameters())


def test_a_learned_text_scores_higher(load_tiny, saved_tokenizer, sample_texts):
    """Higher = member: after training on one text its gradient is smaller than an unseen one's."""
    model = load_tiny()
    # Texts of one chunk each, the first learned.
    learned, unseen = (" ".join(text.split()[:25]) for text in sample_texts[:2])
    ids = chunk(saved_tokenizer(learned)["input_ids"], models.context_length(model))[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    scores = gradnorm_scores(model, saved_tokenizer, [learned, unseen], ["member", "other"])
    total = scores[scores["selection"] == "all"].set_index("text_id")["score"]
    assert total["member"] > total["other"]
    assert all(param.grad is None for param in model.parameters())


def test_a_text_of_one_token_is_an_error(load_tiny, saved_tokenizer):
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        gradnorm_scores(load_tiny(), saved_tokenizer, [""], ["empty"])
