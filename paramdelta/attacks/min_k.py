"""Min-K% Prob (Shi et al. 2023, "Detecting Pretraining Data from Large Language Models").

A member seldom contains outlier tokens of very low probability. The score is the paper's
Min-K% Prob: the mean of the lowest K% token log-probabilities (the first token is not
scored), higher = member. (The authors' code stores its negative and flips the sign again
when it evaluates.) Their code keeps int(K% * T) tokens; here at least one is kept, see
``lowest_fraction_mean``.
"""

from paramdelta.attacks.base import Attack, Document, lowest_fraction_mean, require_k


class MinKAttack(Attack):
    """Score = mean of the lowest K% of log p(x_t | x_<t)."""

    name = "mink"
    uses_k = True

    def score(self, document: Document, k: float | None = None) -> float:
        return lowest_fraction_mean(document.target.log_probs, require_k(self, k))
