"""LOSS attack (Yeom et al. 2018; Carlini et al. 2021): members have a lower loss."""

from paramdelta.attacks.base import Attack, Document


class LossAttack(Attack):
    """Score = -mean token NLL = mean token log-likelihood."""

    name = "loss"

    def score(self, document: Document, k: float | None = None) -> float:
        return -document.target.nll
