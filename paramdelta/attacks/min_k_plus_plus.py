"""Min-K%++ (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting Pre-Training Data
from Large Language Models").

Each token's log-probability is standardised against the model's own next-token
distribution at that position, (log p(x_t) - mu_t) / sigma_t, because training data sit at
local maxima of the likelihood; score = the mean of the lowest K% of these values (the
same n = max(1, floor(K% * T)) tokens as Min-K%). mu and sigma come from the shared forward
pass. Two departures from the authors' code, on details the paper does not fix: it computes
sigma as sqrt(E[(log p)^2] - mu^2), which in fp32 cancels catastrophically at a nearly
flat distribution, and the centred form sqrt(E[(log p - mu)^2]) is used here (the same
quantity); and it divides by sigma unguarded, whereas here sigma is floored at
``SIGMA_FLOOR`` so that a (numerically) one-hot distribution, whose standardised value is
0/0, gives a finite score.
"""

import numpy as np

from paramdelta.attacks.base import Attack, Document, lowest_fraction_mean, require_k

SIGMA_FLOOR = 1e-6


def standardised_log_probs(log_probs: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(log p - mu) / sigma per token."""
    return (log_probs - mu) / np.maximum(sigma, SIGMA_FLOOR)


class MinKPlusPlusAttack(Attack):
    """Score = mean of the lowest K% of (log p(x_t) - mu_t) / sigma_t."""

    name = "minkpp"
    uses_k = True
    needs_moments = True

    def score(self, document: Document, k: float | None = None) -> float:
        stats = document.target
        if stats.mu is None or stats.sigma is None:
            raise ValueError("Min-K%++ needs mu and sigma: compute the target statistics with moments=True")
        return lowest_fraction_mean(standardised_log_probs(stats.log_probs, stats.mu, stats.sigma), require_k(self, k))
