"""Black-box membership-inference baselines (METHOD.md section 3), every score oriented so
that higher = more likely a member.

* ``score_texts``: every log-probability attack of ``ATTACKS`` (loss, zlib, lowercase, ref,
  mink, minkpp) from one shared forward pass per text (``token_stats``).
* ``samia_scores``: SaMIA and SaMIA*zlib, which sample continuations (the slow one).
* ``blind_scores``: a bag-of-words classifier that never sees a model.
* ``loss_change.loss_change_scores``: the one-step loss change, from the per-text training
  records (no pass of its own).

Shaped like iamgroot42/mimir: one module and one small class per attack, registered by
name in ``registry.ATTACKS``, all reading the per-token statistics computed once.
"""

import importlib

# Where each name lives. They load on first use (PEP 562), so a job that needs one attack
# without a model (the one-step loss change reads training records) does not import torch.
_WHERE = {
    "K_GRID": "base",
    "Attack": "base",
    "Document": "base",
    "blind_scores": "blind",
    "TokenStats": "forward",
    "token_stats": "forward",
    "ATTACKS": "registry",
    "rouge1_recall": "samia",
    "samia_score": "samia",
    "samia_scores": "samia",
    "SCORE_COLUMNS": "score",
    "score_documents": "score",
    "score_texts": "score",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
