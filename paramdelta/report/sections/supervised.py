"""Supervised classifiers on the per-layer change, apart from the unsupervised scores."""

from __future__ import annotations

from paramdelta.attacks.gradnorm import NAME as GRADNORM
from paramdelta.config import is_supervised
from paramdelta.metrics import training_method
from paramdelta.report.format import (
    BLIND,
    MISSING,
    NO_BUDGET,
    auroc_with_interval,
    best_row,
    budget_heading,
    variant_label,
)
from paramdelta.report.sections.optimizer import setting_name
from paramdelta.report.tables import plain_table
from paramdelta.supervised import CLASSIFIERS

ID = "supervised"
HEADING = "Supervised: classifiers on the per-layer change"
CAPTION = (
    "The parameter-change scores above use no labels: members move the weights less, averaged over a "
    "fixed selection of layers. Here a classifier learns from labelled texts which layers' change marks a "
    "member and in which direction (logistic regression on the standardised per-layer changes; a random "
    "forest), as published white-box attacks do with per-module update profiles. Each text is scored by "
    "a classifier fitted on the other folds only (5-fold, stratified), so the AUROC is out of fold, with "
    "a bootstrap 95% interval over the texts (the folds' fitting is not resampled). An attacker needs "
    "labelled members and non-members of the same distribution for this; the unsupervised scores do not. "
    "The combined columns join the label-free param-delta score over all layers with the black-box attack "
    "(and K) that is best on the other folds, by the mean of their percentiles or by a logistic regression, "
    "its direction too chosen on the other folds."
)
PER_DATASET = True
# The methods that learn from labels, by column: paramdelta.supervised and paramdelta.combination.
BASES = {
    **{f"supervised-{name}": f"supervised-{name}" for name in CLASSIFIERS},
    "combined-rank": "combined with the best black-box attack: rank average",
    "combined-logistic": "combined with the best black-box attack: logistic",
}


def context(data) -> dict:
    metrics = data.metrics
    learned = metrics[metrics["method"].map(is_supervised)]
    if learned.empty:
        return {"table": None}
    learned = learned.assign(
        _setting=learned["method"].map(training_method), _base=learned["method"].str.split(":").str[0]
    )
    bases = [base for base in BASES if (learned["_base"] == base).any()]
    columns = ["model", "budget", "setting", "param-delta, all layers (no labels)"] + [
        f"{BASES[base]} [95% interval]" for base in bases
    ]
    rows = []
    for model in data.models:
        for budget in data.budgets:
            here = learned[(learned["model"] == model) & (learned["budget"] == budget)]
            for setting in dict.fromkeys(here["_setting"]):
                unsupervised = metrics[
                    (metrics["model"] == model)
                    & (metrics["budget"] == budget)
                    & (metrics["method"] == setting)
                    & (metrics["selection"] == "all")
                ]
                row = [model, budget_heading(budget), setting_name(setting)]
                row.append(auroc_with_interval(unsupervised.iloc[0]) if not unsupervised.empty else MISSING)
                for base in bases:
                    found = here[(here["_setting"] == setting) & (here["_base"] == base)]
                    row.append(auroc_with_interval(found.iloc[0]) if not found.empty else MISSING)
                rows.append(row)
    # The model-only attacks but the white-box gradient norm, and no blind baseline.
    black_box = metrics[(metrics["budget"] == NO_BUDGET) & ~metrics["method"].isin([BLIND, GRADNORM])]
    best = best_row(black_box)
    reference = (
        f"Best black-box attack: {variant_label(best, model=True)}, {auroc_with_interval(best)}."
        if best is not None
        else None
    )
    return {"table": plain_table(columns, rows, label_columns=3), "reference": reference}
