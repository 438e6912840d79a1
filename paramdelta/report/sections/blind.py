"""Blind baseline: does the data set measure membership, or do its two sets differ in kind?

Also the warning at the top of the page, for every data set whose blind baseline is at
or above its best attack.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from paramdelta.report.format import BLIND, MISSING, auroc_with_interval, best_row, variant_label
from paramdelta.report.tables import plain_table

ID = "blind"
HEADING = "Blind baseline: does the data set measure membership?"
CAPTION = (
    "A bag-of-words classifier trained on the texts alone, never looking at the model, against the best "
    "attack of the data set (any method, model, budget and selection). If the text alone separates "
    "members from non-members as well as the best attack, the two sets differ in distribution (for "
    "WikiMIA: in time), and an attack's AUROC may reflect that shift rather than membership. A warning "
    "appears here and at the top of the page when the blind AUROC is at or above the best attack's."
)
PER_DATASET = True


@dataclass(frozen=True)
class BlindCheck:
    blind: pd.Series
    best_attack: pd.Series | None

    @property
    def warns(self) -> bool:
        return self.best_attack is not None and float(self.blind["auroc"]) >= float(self.best_attack["auroc"])


@dataclass(frozen=True)
class BlindWarning:
    """What the warning says: the data set, the blind AUROC, and the best attack with its AUROC."""

    dataset: str
    blind: str
    best_label: str
    best: str
    link: str = ""


def blind_check(data) -> BlindCheck | None:
    """The blind baseline against the best attack of the data set; None without a blind baseline."""
    metrics = data.metrics
    blind = best_row(metrics[metrics["method"] == BLIND])
    if blind is None:
        return None
    return BlindCheck(blind, best_row(metrics[metrics["method"] != BLIND]))


def _warning(dataset: str, check: BlindCheck, link: str = "") -> BlindWarning:
    best = check.best_attack
    return BlindWarning(
        dataset, auroc_with_interval(check.blind), variant_label(best, model=True), auroc_with_interval(best), link
    )


def warnings(data) -> list[BlindWarning]:
    """The page's warnings: one per data set whose blind baseline is at or above its best attack."""
    found = []
    for subset in data.per_dataset():
        check = blind_check(subset)
        if check is not None and check.warns:
            found.append(_warning(subset.dataset, check, link=f"{ID}-{subset.anchor}"))
    return found


def context(data) -> dict:
    check = blind_check(data)
    if check is None:
        return {"check": None}
    best = check.best_attack
    rows = [
        ["blind baseline (bag of words, cross-validated)", auroc_with_interval(check.blind)],
        [
            f"best attack: {variant_label(best, model=True)}" if best is not None else "best attack: none run",
            MISSING if best is None else auroc_with_interval(best),
        ],
    ]
    return {
        "check": check,
        "table": plain_table(["", "AUROC [95% interval]"], rows),
        "warning": _warning(data.dataset or "", check) if check.warns else None,
    }
