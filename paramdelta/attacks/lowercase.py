"""Lowercase ratio (Carlini et al. 2021): compare the loss of a text with that of its lowercased copy.

Carlini et al. rank by the ratio of the two log-perplexities. Score = -(NLL(text) /
NLL(lowercased text)): a member is unusually likely in its original casing. The code of
Min-K% (Shi et al. 2023) uses NLL(lowercased) / NLL(text) instead, which ranks texts the
same way since both NLLs are positive.
"""

from paramdelta.attacks.base import Attack, Document


class LowercaseAttack(Attack):
    """Score = -(NLL(text) / NLL(text.lower())), both under the target model."""

    name = "lowercase"
    needs_lowercase = True

    def score(self, document: Document, k: float | None = None) -> float:
        if document.lowercase is None:
            raise ValueError("the lowercase attack needs the statistics of the lowercased text")
        return -document.target.nll / document.lowercase.nll
