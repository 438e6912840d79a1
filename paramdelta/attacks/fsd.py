"""Fine-tuned score deviation, FSD (Zhang et al. 2025, "Fine-tuning can Help Detect Pretraining
Data from Large Language Models", ICLR 2025).

Fine-tuning the target on a few texts it has not seen lowers its loss on unseen texts of the
same kind far more than on the texts it was trained on. So: copy the model, fine-tune the copy
on `texts` labelled non-members of the data set, and score every other text by how little its
loss fell: -(NLL_target(x) - NLL_fine-tuned(x)), higher = member. The base score is the loss
(the paper deviates several scores, perplexity and Min-K% among them).

Departures, where the paper and its code (LoRA through a trainer, on a non-member set drawn from
the benchmark) leave room or do not fit here: the copy is fine-tuned in full, fp32, with AdamW at
a constant `lr` for `epochs` epochs, one text (in training's chunks) a step, in the log-probability
job; on a 7B model that needs the training job's memory, not an inference job's. The fine-tuning
texts are drawn with `seed` from the labelled non-members, as ReCaLL's shots are, and are not
scored (the metrics count fewer non-members), which the report says.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

NAME = "fsd"
TEXTS, EPOCHS, LR = 20, 3, 1e-4


def fine_tune(model, tokenizer, texts: Sequence[str], *, epochs: int, lr: float, seed: int, max_length: int | None):
    """A copy of `model` trained on `texts` (one text a step, in training's chunks); `model` is untouched."""
    import torch

    from paramdelta import models
    from paramdelta.train import chunk

    window = min(max_length or models.context_length(model), models.context_length(model))
    device = next(model.parameters()).device
    tuned = copy.deepcopy(model).to(torch.float32).train()
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr, weight_decay=0.0)
    pieces = [piece.to(device) for text in texts for piece in chunk(tokenizer(text)["input_ids"], window)]
    for _ in range(epochs):
        for input_ids in pieces:
            loss = tuned(input_ids=input_ids, labels=input_ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return tuned.eval()


def fsd_scores(
    model,
    tokenizer,
    texts: Sequence[str],
    text_ids: Sequence[Hashable],
    labels: Sequence[int],
    *,
    n_texts: int = TEXTS,
    epochs: int = EPOCHS,
    lr: float = LR,
    seed: int = 0,
    batch_size: int | None = None,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Long table (text_id, method, k, score) of -(NLL_target - NLL_fine-tuned) for every text not fine-tuned on."""
    from paramdelta.attacks.forward import BATCH_SIZE, token_stats
    from paramdelta.attacks.recall import choose_shots

    if not len(text_ids) == len(texts) == len(labels):
        raise ValueError(f"{len(text_ids)} text_ids, {len(texts)} texts and {len(labels)} labels")
    chosen = set(choose_shots(text_ids, labels, n_texts, seed, attack="FSD"))
    tuned = fine_tune(
        model, tokenizer, [texts[i] for i in sorted(chosen)], epochs=epochs, lr=lr, seed=seed, max_length=max_length
    )
    scored = [i for i in range(len(texts)) if i not in chosen]
    options = dict(batch_size=batch_size or BATCH_SIZE, moments=False, max_length=max_length)
    before = token_stats(model, tokenizer, [texts[i] for i in scored], **options)
    after = token_stats(tuned, tokenizer, [texts[i] for i in scored], **options)
    rows = [(text_ids[i], NAME, np.nan, -(b.nll - a.nll)) for i, b, a in zip(scored, before, after, strict=True)]
    return pd.DataFrame(rows, columns=["text_id", "method", "k", "score"])
