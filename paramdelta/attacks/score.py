"""Score texts with every requested log-probability attack from one shared forward pass."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from paramdelta.attacks.base import K_GRID, Attack, Document
from paramdelta.attacks.forward import BATCH_SIZE, token_stats
from paramdelta.attacks.registry import ATTACKS

SCORE_COLUMNS = ("text_id", "method", "k", "score")


def resolve_attacks(names: Sequence[str] | None, has_reference: bool, has_frequencies: bool = False) -> list[Attack]:
    """The attacks called ``names``; by default every registered one (``ref`` only with a
    reference, ``dcpdd`` only with frequencies)."""
    if names is None:
        return [
            attack
            for attack in ATTACKS.values()
            if (has_reference or not attack.needs_reference) and (has_frequencies or not attack.needs_frequencies)
        ]
    unknown = [name for name in names if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; registered: {', '.join(ATTACKS)}")
    attacks = [ATTACKS[name] for name in dict.fromkeys(names)]
    if not has_reference and any(attack.needs_reference for attack in attacks):
        raise ValueError("the ref attack needs reference=(model, tokenizer)")
    if not has_frequencies and any(attack.needs_frequencies for attack in attacks):
        raise ValueError("the dcpdd attack needs frequencies (paramdelta.attacks.dc_pdd.token_frequencies)")
    return attacks


def score_documents(
    documents: Sequence[Document],
    attacks: Sequence[Attack],
    text_ids: Sequence[Hashable],
    ks: Sequence[float] = K_GRID,
) -> pd.DataFrame:
    """Long table (text_id, method, k, score) of every attack on every document; k is NaN
    for attacks without K."""
    rows = []
    for attack in attacks:
        for k in ks if attack.uses_k else (None,):
            for text_id, document in zip(text_ids, documents, strict=True):
                rows.append((text_id, attack.name, np.nan if k is None else float(k), attack.score(document, k)))
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def score_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    attacks: Sequence[str] | None = None,
    *,
    ks: Sequence[float] = K_GRID,
    batch_size: int = BATCH_SIZE,
    reference: tuple | None = None,
    frequencies: np.ndarray | None = None,
    text_ids: Sequence[Hashable] | None = None,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Membership scores of ``texts`` under ``model``, higher = member, as a long table.

    Columns: ``text_id`` (``text_ids``, or the position 0..n-1), ``method`` (attack name),
    ``k`` (percent, NaN for attacks without K), ``score``. The model runs once per text; a
    second pass over the lowercased texts runs only if ``lowercase`` is asked for, and
    ``reference`` = (model, tokenizer) runs once per text if ``ref`` is; ``frequencies`` (a
    reference corpus's, dc_pdd.token_frequencies) are what ``dcpdd`` reads. A text longer than
    ``max_length`` (default: each model's context) is scored over the chunks training uses.
    """
    selected = resolve_attacks(attacks, reference is not None, frequencies is not None)
    if text_ids is not None and len(text_ids) != len(texts):
        raise ValueError(f"{len(text_ids)} text_ids for {len(texts)} texts")
    moments = any(attack.needs_moments for attack in selected)
    target = token_stats(model, tokenizer, texts, batch_size=batch_size, moments=moments, max_length=max_length)
    lowercase = reference_stats = [None] * len(texts)
    if any(attack.needs_lowercase for attack in selected):
        lowered = [text.lower() for text in texts]
        lowercase = token_stats(model, tokenizer, lowered, batch_size=batch_size, moments=False, max_length=max_length)
    if any(attack.needs_reference for attack in selected):
        reference_model, reference_tokenizer = reference
        reference_stats = token_stats(
            reference_model, reference_tokenizer, texts, batch_size=batch_size, moments=False, max_length=max_length
        )
    documents = [
        Document(text, stats, lower, ref, frequencies)
        for text, stats, lower, ref in zip(texts, target, lowercase, reference_stats, strict=True)
    ]
    ids = list(range(len(texts))) if text_ids is None else list(text_ids)
    return score_documents(documents, selected, ids, ks)
