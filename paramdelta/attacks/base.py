"""The interface every log-probability attack implements, and what it is given.

An attack is a small class with a ``name`` and a ``score(document, k)`` method that returns
one float per text, oriented so that a higher score means "more likely a member" -- for
every attack, with no sign flips left to the caller. Attacks with a K hyper-parameter
(Min-K% and Min-K%++) are scored once per K of the grid; the others ignore ``k``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from paramdelta.attacks.forward import TokenStats
from paramdelta.config import defaults

# The K sweep (percent) of Shi et al.'s (2023) code, used here for Min-K% and Min-K%++ alike:
# config/schema.yaml's default baselines.k.
K_GRID: tuple[float, ...] = tuple(float(k) for k in defaults("baselines", "k"))


@dataclass(frozen=True)
class Document:
    """One text and the statistics the attacks read.

    ``lowercase`` (the lowercased text under the target model) and ``reference`` (the text
    under the reference model) are only computed when an attack that needs them is run;
    ``frequencies`` (every token id's frequency in a reference corpus, shared by all
    documents) only when DC-PDD is.
    """

    text: str
    target: TokenStats
    lowercase: TokenStats | None = None
    reference: TokenStats | None = None
    frequencies: np.ndarray | None = None


class Attack(ABC):
    """A membership-inference attack on per-token statistics; higher score = member.

    The flags say what the attack reads besides the target's log-probabilities, so that
    ``score_texts`` computes only that: ``needs_moments`` (mu and sigma of the target pass),
    ``needs_lowercase`` and ``needs_reference`` (one more pass each), ``needs_frequencies``
    (a reference corpus's token frequencies, no pass).
    """

    name: ClassVar[str]
    uses_k: ClassVar[bool] = False
    needs_moments: ClassVar[bool] = False
    needs_lowercase: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    needs_frequencies: ClassVar[bool] = False

    @abstractmethod
    def score(self, document: Document, k: float | None = None) -> float:
        """The membership score of one text (for K attacks, at K = ``k`` percent)."""


def lowest_fraction_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest ``k`` percent of ``values``: n = max(1, floor(k/100 * len)) of them.

    floor is what the reference code of Min-K% and Min-K%++ does (``int(len * ratio)``);
    the minimum of one keeps short texts scored where that code averages an empty slice
    (NaN).
    """
    if not 0 < k <= 100:
        raise ValueError(f"k is a percentage in (0, 100], got {k}")
    if len(values) == 0:
        raise ValueError("no token values to take the lowest k percent of")
    # With k in percent, k * len is exact for whole-number k, so the floor never lands one
    # short of a whole number the way int(0.29 * 100) = 28 does.
    n = max(1, math.floor(k * len(values) / 100))
    return float(np.sort(values)[:n].mean())


def require_k(attack: Attack, k: float | None) -> float:
    if k is None:
        raise ValueError(f"attack {attack.name!r} needs k (a percentage)")
    return k
