"""PAC, Polarized Augment Calibration (Ye et al. 2024, "Data Contamination Calibration for
Black-box LLMs", ACL Findings 2024).

The polarized distance of a text is the mean log-probability of its most likely tokens (the
top ``FAR`` = 5%) minus that of its least likely (the bottom ``LOCAL`` = 30%). A text the model
was trained on sits at a local maximum of the likelihood: its unlikely tokens are less so, and
perturbing it costs more. The text is perturbed ``AUGMENTATIONS`` = 5 times by swapping words
(max(1, floor(0.3 * words)) random swaps of two positions, words split on spaces, the authors'
easy-data-augmentation setting), and PAC = PD(text) - mean PD(perturbed copies). Members have
the lower PAC (the authors' code ranks by -PAC), so the score is -PAC: higher = member.

The parameters are the authors' code's (yyy01/PAC, attack.py and src/eda.py). Its random
swaps come from one global random state over the whole data set; here each text's swaps come
from a generator seeded by `seed` and the text itself, so a text's score does not depend on
the others or their order. Five more forward passes per text, batched like the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

NAME = "pac"
FAR, LOCAL = 0.05, 0.3
AUGMENTATIONS, SWAP_RATIO = 5, 0.3


def polarized_distance(log_probs: np.ndarray, far: float = FAR, local: float = LOCAL) -> float:
    """Mean of the top `far` fraction of the token log-probabilities minus the mean of the bottom `local`."""
    ordered = np.sort(log_probs)
    n_far, n_local = max(1, int(len(ordered) * far)), max(1, int(len(ordered) * local))
    return float(ordered[-n_far:].mean() - ordered[:n_local].mean())


def swapped_copies(text: str, n: int = AUGMENTATIONS, ratio: float = SWAP_RATIO, seed: int = 0) -> list[str]:
    """`n` copies of `text`, each with max(1, floor(ratio * words)) random swaps of two words."""
    words = text.split(" ")
    rng = np.random.default_rng([seed, zlib.crc32(text.encode("utf-8"))])
    copies = []
    for _ in range(n):
        copy = list(words)
        if len(copy) > 1:
            for _ in range(max(1, int(ratio * len(copy)))):
                i, j = rng.choice(len(copy), size=2, replace=False)
                copy[i], copy[j] = copy[j], copy[i]
        copies.append(" ".join(copy))
    return copies


def pac_scores(
    model,
    tokenizer,
    texts: Sequence[str],
    text_ids: Sequence[Hashable],
    *,
    augmentations: int = AUGMENTATIONS,
    swap_ratio: float = SWAP_RATIO,
    seed: int = 0,
    batch_size: int | None = None,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Long table (text_id, method, k, score) of -PAC per text."""
    from paramdelta.attacks.forward import BATCH_SIZE, token_stats

    if len(text_ids) != len(texts):
        raise ValueError(f"{len(text_ids)} text_ids for {len(texts)} texts")
    copies = [copy for text in texts for copy in swapped_copies(text, augmentations, swap_ratio, seed)]
    options = dict(batch_size=batch_size or BATCH_SIZE, moments=False, max_length=max_length)
    original = token_stats(model, tokenizer, texts, **options)
    perturbed = token_stats(model, tokenizer, copies, **options)
    rows = []
    for i, (text_id, stats) in enumerate(zip(text_ids, original, strict=True)):
        calibration = np.mean(
            [polarized_distance(s.log_probs) for s in perturbed[i * augmentations : (i + 1) * augmentations]]
        )
        rows.append((text_id, NAME, np.nan, -(polarized_distance(stats.log_probs) - calibration)))
    return pd.DataFrame(rows, columns=["text_id", "method", "k", "score"])
