"""Black-box membership-inference baselines (METHOD.md section 3), every score oriented so
that higher = more likely a member.

* ``score_texts``: every log-probability attack of ``ATTACKS`` (loss, zlib, lowercase, ref,
  mink, minkpp) from one shared forward pass per text (``token_stats``).
* ``samia_scores``: SaMIA and SaMIA*zlib, which sample continuations (the slow one).
* ``blind_scores``: a bag-of-words classifier that never sees a model.

Shaped like iamgroot42/mimir: one module and one small class per attack, registered by
name in ``registry.ATTACKS``, all reading the per-token statistics computed once.
"""

from paramdelta.attacks.base import K_GRID, Attack, Document
from paramdelta.attacks.blind import blind_scores
from paramdelta.attacks.forward import TokenStats, token_stats
from paramdelta.attacks.registry import ATTACKS
from paramdelta.attacks.samia import rouge1_recall, samia_score, samia_scores
from paramdelta.attacks.score import SCORE_COLUMNS, score_documents, score_texts

__all__ = [
    "ATTACKS",
    "K_GRID",
    "SCORE_COLUMNS",
    "Attack",
    "Document",
    "TokenStats",
    "blind_scores",
    "rouge1_recall",
    "samia_score",
    "samia_scores",
    "score_documents",
    "score_texts",
    "token_stats",
]
