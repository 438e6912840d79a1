"""Reference-model calibration: a member is unusually likely under the target compared with
a reference model that did not see it.

Carlini et al. (2021) compare with a smaller model by the ratio of log-perplexities; the
difference of the two losses is used here, as in METHOD.md and in the "Ref" baseline of
Shi et al.'s (2023) code. The two models may use different tokenizers: each NLL is the
mean over its own tokens.
"""

from paramdelta.attacks.base import Attack, Document


class ReferenceAttack(Attack):
    """Score = -(NLL_target - NLL_reference)."""

    name = "ref"
    needs_reference = True

    def score(self, document: Document, k: float | None = None) -> float:
        if document.reference is None:
            raise ValueError("the ref attack needs a reference model")
        return -(document.target.nll - document.reference.nll)
