"""One-step loss change: how much the loss on a text falls after one optimizer step on it.

A text the model has already learned has little left to learn: its loss falls less when the
model takes a step on it. With plain SGD the fall after one step is, to first order,
lr * ||grad L||^2, the squared gradient norm that gradient-norm attacks read; with AdamW it
is about lr * ||grad L||_1 (every coordinate moves about lr), so the same quantity measures
the gradient in another norm. The "optimization gap" of ICP-MIA ("In-Context Probing for
Membership Inference in Fine-Tuned Language Models", arXiv 2512.16292) names the same
signal -- members keep less potential to reduce their loss -- and estimates it without
gradients, by in-context probing; here it is measured directly, with no code of theirs
followed. Where the paper of the issue list's "one-step loss change" differs (which step,
which loss), this module has not been checked against it.

Nothing is trained for it: the per-text training job already steps from the exact base
weights, and its record keeps the training loss of every epoch, measured before that
epoch's steps. For a text of one chunk (every text of the demo, and 32-word texts on any
model) `losses[0]` is the loss of the base weights and `losses[1]` the loss after exactly one
step; for a longer text, after one epoch of steps (one per chunk). The score is minus the
fall, so that higher = member. It is the same for every fixed budget of a training setting
(the schedule's first learning rate does not depend on the run's length), and each training
setting (optimizers:) gives its own, as `loss-change:<name>`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NAME = "loss-change"


def loss_change_scores(texts: pd.DataFrame, method: str = NAME) -> pd.DataFrame:
    """Per-text scores (text_id, label, method, selection, k, score) from a training record
    (the deltas rule's .texts.parquet: status and per-epoch `losses`). A text that failed, or
    ran fewer than two epochs, has no score."""
    missing = [column for column in ("text_id", "label", "status", "losses") if column not in texts.columns]
    if missing:
        raise ValueError(f"training record lacks columns {missing}")
    usable = texts[(texts["status"] == "ok") & texts["losses"].map(lambda losses: len(losses) >= 2)]
    fall = usable["losses"].map(lambda losses: float(losses[0]) - float(losses[1]))
    return pd.DataFrame(
        {
            "text_id": usable["text_id"].to_numpy(),
            "label": usable["label"].to_numpy(),
            "method": method,
            "selection": None,
            "k": np.nan,
            "score": -fall.to_numpy(dtype=float),
        }
    )
