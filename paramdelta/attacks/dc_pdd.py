"""DC-PDD (Zhang et al. 2024, "Pretraining Data Detection for Large Language Models: A
Divergence-based Calibration Method", EMNLP 2024): token probabilities calibrated by how
common each token is in a reference corpus.

A token the model predicts with high probability although it is rare in ordinary text is
evidence of training on this text. For each scored token x_t that occurs in the text for the
first time, alpha_t = p(x_t | x_<t) * log(1 / f(x_t)), with f the token's Laplace-smoothed
frequency in the reference corpus ((count + 1) / (tokens + vocabulary)); alpha_t is clipped
at ``CLIP`` (the paper's a = 0.01) and the score is the mean of the clipped values: higher =
member, the paper's orientation (iamgroot42/mimir returns its negative). As in the authors'
code the probability is p, not log p, and only first occurrences count. One departure: the
authors prepend an end-of-text token so that the text's first token is scored; here, as for
every other attack of this project, it is not (it has no context in the text).

The reference corpus is the config's `baselines.dcpdd.corpus` (a file of texts, tokenised with
the target's tokenizer); without one it is the data set's own texts, labels unread, which the
report says.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from paramdelta.attacks.base import Attack, Document

NAME = "dcpdd"
CLIP = 0.01


def token_frequencies(tokenizer, texts: Iterable[str]) -> np.ndarray:
    """Laplace-smoothed frequency of every token id of `tokenizer` over `texts`."""
    counts = np.zeros(len(tokenizer), dtype=np.float64)
    for text in texts:
        ids = np.asarray(tokenizer(text)["input_ids"], dtype=np.int64)
        np.add.at(counts, ids[ids < counts.size], 1.0)
    return (counts + 1.0) / (counts.sum() + counts.size)


def first_occurrences(ids: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct id, in order."""
    _, first = np.unique(ids, return_index=True)
    return np.sort(first)


class DcPddAttack(Attack):
    """Score = mean over first-occurring tokens of min(p(x_t) * log(1 / f(x_t)), CLIP)."""

    name = NAME
    needs_frequencies = True

    def score(self, document: Document, k: float | None = None) -> float:
        if document.frequencies is None:
            raise ValueError("DC-PDD needs the reference corpus's token frequencies")
        stats = document.target
        scored = stats.token_ids[1:]  # log_probs[t - 1] is that of token t
        first = first_occurrences(scored)
        frequency = document.frequencies[np.minimum(scored[first], document.frequencies.size - 1)]
        alpha = np.exp(stats.log_probs[first]) * np.log(1.0 / frequency)
        return float(np.minimum(alpha, CLIP).mean())
