"""GradNorm: the norm of the loss's gradient with respect to the parameters, over all of
them and per layer group.

A text the model has learned sits near a minimum of its loss: its gradient is small. Wang,
Wang, Li and Neel (2024, "Pandora's White-Box: Precise Training Data Detection and
Extraction in Large Language Models") read the gradient norm of every layer as features of
a membership classifier; this module computes the label-free scores, one per layer group
(the `selection`: all, attention, mlp, norm, embedding; groups as paramdelta.models assigns
them), each minus the L2 norm of that group's gradient, so that higher = member. No code of
theirs is followed. The supervised classifiers of this project (paramdelta.supervised) are
the counterpart of their classifier, on the weights' change instead of the gradient.

The loss is the training job's: the mean token NLL of the text in the chunks training uses
(a text longer than the window is split the same way, paramdelta.train.chunk), one backward
pass per text in fp32, the parameters untouched. Beside the one-step loss change
(paramdelta.attacks.loss_change), which is about lr * ||grad||^2 after a step of plain SGD,
this is the gradient itself, before any step.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

NAME = "gradnorm"


def gradnorm_scores(
    model,
    tokenizer,
    texts: Sequence[str],
    text_ids: Sequence[Hashable],
    *,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Long table (text_id, method, selection, k, score): per text, minus the gradient norm over
    all parameters (selection `all`) and over each layer group present in the model."""

    from paramdelta import models
    from paramdelta.train import chunk

    if len(text_ids) != len(texts):
        raise ValueError(f"{len(text_ids)} text_ids for {len(texts)} texts")
    group_of = {name: layer.group for layer in models.model_layers(model) for name in layer.params}
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    groups = sorted({group_of[name] for name, _ in named})
    window = min(max_length or models.context_length(model), models.context_length(model))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout off: the gradient of the model as it is
    rows = []
    try:
        for text_id, text in zip(text_ids, texts, strict=True):
            ids = tokenizer(text)["input_ids"]
            pieces = chunk(ids, window) if len(ids) >= 2 else []
            if not pieces:
                raise ValueError(f"text {text_id!r} has fewer than 2 tokens: no loss, no gradient")
            model.zero_grad(set_to_none=True)
            loss = sum(
                model(input_ids=piece.to(device), labels=piece.to(device)).loss.float() for piece in pieces
            ) / len(pieces)
            loss.backward()
            squares = dict.fromkeys(groups, 0.0)
            for name, param in named:
                if param.grad is not None:
                    squares[group_of[name]] += float(param.grad.detach().double().square().sum())
            norms = {"all": np.sqrt(sum(squares.values())), **{group: np.sqrt(sq) for group, sq in squares.items()}}
            rows += [(text_id, NAME, selection, np.nan, -norm) for selection, norm in norms.items()]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return pd.DataFrame(rows, columns=["text_id", "method", "selection", "k", "score"])
