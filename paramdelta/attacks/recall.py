"""ReCaLL (Xie et al. 2024, "ReCaLL: Membership Inference via Relative Conditional
Log-Likelihoods", EMNLP 2024): how much a text's likelihood changes when it follows
non-member text.

Score = LL(x | P) / LL(x), with LL the mean token log-likelihood (negative) and P a prefix of
known non-member texts. Conditioning on non-member context lowers the likelihood of a member
more than that of a non-member, so members have the larger ratio: higher = member, as in the
paper (the ratio as iamgroot42/mimir's recall.py computes it, prefix texts joined and placed
before the text, the prefix's shots cut from the front when they do not fit the context).

Departures, on details the paper leaves open: both likelihoods are taken over the same tokens
(the text's second token on; unconditioned, the first has no context), and a text longer
than half the context is scored on its first half-context of tokens in both, so that the
prefix always has room. The shots are drawn (with `seed`) from the data set's labelled
non-members: this attack uses labels, and the texts it spends as shots are not scored (its
metrics count fewer non-members), which the report says. One forward pass per text for each
likelihood, unbatched.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

NAME = "recall"
SHOTS = 5


def choose_shots(
    text_ids: Sequence[Hashable], labels: Sequence[int], shots: int, seed: int, *, attack: str = "ReCaLL"
) -> list[int]:
    """Positions of `shots` labelled non-members, drawn with `seed` (independent of the order of the texts)."""
    nonmembers = sorted((str(text_id), i) for i, (text_id, label) in enumerate(zip(text_ids, labels)) if label == 0)
    if len(nonmembers) <= shots:
        raise ValueError(
            f"{attack} needs more than {shots} labelled non-members (it scores none of those it uses); "
            f"the data set has {len(nonmembers)}"
        )
    drawn = np.random.default_rng(seed).choice(len(nonmembers), size=shots, replace=False)
    return [nonmembers[j][1] for j in sorted(drawn)]


def _mean_log_prob(model, ids: list[int], scored_from: int, device) -> float:
    """Mean log p(ids[t] | ids[<t]) over t >= scored_from."""
    import torch

    input_ids = torch.tensor([ids], device=device)
    log_p = torch.log_softmax(model(input_ids=input_ids).logits[0, :-1].float(), dim=-1)
    token = log_p.gather(-1, input_ids[0, 1:, None]).squeeze(-1)
    return float(token[scored_from - 1 :].double().mean())


def recall_scores(
    model,
    tokenizer,
    texts: Sequence[str],
    text_ids: Sequence[Hashable],
    labels: Sequence[int],
    *,
    shots: int = SHOTS,
    seed: int = 0,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Long table (text_id, method, k, score) of LL(x | P) / LL(x) for every text not spent as a shot."""
    from paramdelta import models
    from paramdelta.attacks.forward import eval_mode

    if not len(text_ids) == len(texts) == len(labels):
        raise ValueError(f"{len(text_ids)} text_ids, {len(texts)} texts and {len(labels)} labels")
    window = min(max_length or models.context_length(model), models.context_length(model))
    chosen = choose_shots(text_ids, labels, shots, seed)
    prefix = tokenizer("\n\n".join(texts[i] for i in chosen) + "\n\n")["input_ids"]
    device = next(model.parameters()).device
    rows = []
    with eval_mode(model):
        for i, (text_id, text) in enumerate(zip(text_ids, texts, strict=True)):
            if i in chosen:
                continue
            ids = tokenizer(text)["input_ids"][: max(2, window // 2)]
            if len(ids) < 2:
                raise ValueError(f"text {text_id!r} has fewer than 2 tokens: nothing to score")
            context = prefix[len(prefix) - (window - len(ids)) :] if len(prefix) + len(ids) > window else prefix
            alone = _mean_log_prob(model, ids, 1, device)
            conditioned = _mean_log_prob(model, context + ids, len(context) + 1, device)
            # (A text predicted perfectly has LL 0; its ratio is taken against the smallest LL instead.)
            rows.append((text_id, NAME, np.nan, conditioned / min(alone, -1e-12)))
    return pd.DataFrame(rows, columns=["text_id", "method", "k", "score"])
