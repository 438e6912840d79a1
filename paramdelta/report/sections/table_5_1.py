"""Table 5.1's form: the parameter-change AUROC over all layers, by epoch budget and model."""

from __future__ import annotations

import math

from paramdelta.features import METHOD
from paramdelta.report.format import (
    MISSING,
    auroc,
    auroc_with_interval,
    best_flags,
    budget_heading,
    by_key,
    mean,
)
from paramdelta.report.tables import Cell, Table, header

ID = "table-5-1"
HEADING = "Table 5.1 form: AUROC by epoch budget and model"
CAPTION = (
    f"Attack AUROC of the parameter-change score over all layers ({METHOD}, selection all), in the form "
    "of the thesis's table 5.1: one row per epoch budget (early stopping last), one column per model and "
    "the mean over models. A cell reads AUROC [95% stratified bootstrap interval]; 0.5 is chance and 1 "
    "separates members from non-members perfectly. The best value of each column is bold."
)
PER_DATASET = True


def context(data) -> dict:
    main = by_key(data.main_rows(), ["budget", "model"])
    if not main:
        return {"method": METHOD, "table": None}
    models = data.models
    budgets = [budget for budget in data.budgets if any((budget, model) in main for model in models)]
    aurocs = {
        budget: [main[budget, model]["auroc"] if (budget, model) in main else math.nan for model in models]
        for budget in budgets
    }
    means = {budget: mean(aurocs[budget]) for budget in budgets}
    best_by_model = [best_flags([aurocs[budget][index] for budget in budgets]) for index in range(len(models))]
    best_mean = best_flags([means[budget] for budget in budgets])
    body = []
    for row_index, budget in enumerate(budgets):
        cells = [Cell(budget_heading(budget), label=True)]
        for index, model in enumerate(models):
            text = auroc_with_interval(main[budget, model]) if (budget, model) in main else MISSING
            cells.append(Cell(text, bold=best_by_model[index][row_index]))
        cells.append(Cell(auroc(means[budget]), bold=best_mean[row_index]))
        body.append(cells)
    table = Table([header(["budget", *models, "mean"])], body)
    return {"method": METHOD, "table": table, "coverage": coverage(data)}


def coverage(data) -> dict | None:
    """Which texts the parameter-change AUROCs cover where some training runs failed: those
    texts have no score for that (model, budget), while every baseline scores them all."""
    texts = data.texts
    if texts.empty or "status" not in texts:
        return None
    failed_runs = texts.assign(failed=texts["status"] != "ok")
    counts = failed_runs.groupby(["model", "budget"], sort=False)["failed"].agg(["sum", "size"])
    failed = counts[counts["sum"] > 0]
    if failed.empty:
        return None
    parts = [
        f"{model}, {budget_heading(budget)}: {int(row['size'] - row['sum'])} of {int(row['size'])} "
        f"texts ({int(row['sum'])} failed)"
        for (model, budget), row in failed.iterrows()
    ]
    return {"method": METHOD, "parts": parts}
