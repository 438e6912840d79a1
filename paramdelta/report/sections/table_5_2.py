"""Table 5.2's form: the AUROC of every layer selection and epoch budget, then the baselines."""

from __future__ import annotations

import math

from paramdelta.features import METHOD, SELECTIONS
from paramdelta.report.format import (
    K_NOTE,
    MISSING,
    auroc,
    auroc_with_interval,
    baseline_methods,
    best_flags,
    best_over_k,
    budget_heading,
    by_key,
    is_missing,
    k_label,
    mean,
    method_label,
    ordered_budgets,
)
from paramdelta.report.sections.table_5_1 import coverage
from paramdelta.report.tables import Cell, Table, header

ID = "table-5-2"
HEADING = "Table 5.2 form: AUROC by layer selection, with the baselines"
CAPTION = (
    "AUROC of the score aggregated over each selection of layers, in the form of the thesis's table 5.2: "
    "one row per selection and epoch budget, one column per model and the mean over models, then the "
    "baseline attacks, which score the target model as it is and so have no budget (one value per "
    "model). A cell reads AUROC [95% interval]; for the top-K and Min-K selections it shows the AUROC of "
    "the best K and that K. The best value of each column, over all rows, is bold."
)
PER_DATASET = True


def _groups(data) -> list[tuple[str, str, str, list[str]]]:
    """(label, method, selection, budgets): the thesis's selections in its order, then the baselines."""
    metrics = data.metrics
    ours = metrics[metrics["method"] == METHOD]["selection"].unique().tolist()
    known = [selection for selection in SELECTIONS if selection in ours]
    groups = []
    for selection in known + sorted(set(ours) - set(known)):
        present = set(metrics[(metrics["method"] == METHOD) & (metrics["selection"] == selection)]["budget"])
        groups.append((selection, METHOD, selection, [budget for budget in data.budgets if budget in present]))
    for method in baseline_methods(metrics):
        rows = metrics[metrics["method"] == method]
        for selection in dict.fromkeys(rows["selection"]):
            label = method_label(method) + (f" ({selection})" if selection else "")
            budgets = ordered_budgets(rows[rows["selection"] == selection]["budget"])
            groups.append((label, method, selection, budgets))
    return groups


def context(data) -> dict:
    if data.metrics.empty:
        return {"table": None}
    best = by_key(best_over_k(data.metrics), ["method", "selection", "budget", "model"])
    models = data.models
    # One row per (group, budget); per row one metrics row (or None) per model.
    rows = [
        (label, method, budget, [best.get((method, selection, budget, model)) for model in models])
        for label, method, selection, budgets in _groups(data)
        for budget in budgets
    ]
    means = [mean(math.nan if row is None else row["auroc"] for row in chosen) for *_, chosen in rows]
    flags = [
        best_flags([chosen[index]["auroc"] if chosen[index] is not None else math.nan for *_, chosen in rows])
        for index in range(len(models))
    ]
    mean_flags = best_flags(means)
    body, uses_k, previous = [], False, None
    for row_index, (label, method, budget, chosen) in enumerate(rows):
        cells = []
        if (label, method) != previous:
            span = sum(1 for other in rows if (other[0], other[1]) == (label, method))
            cells.append(Cell(label, label=True, rowspan=span))
            previous = (label, method)
        cells.append(Cell(budget_heading(budget), label=True))
        for index, row in enumerate(chosen):
            if row is None:
                cells.append(Cell(MISSING))
                continue
            text, note = auroc_with_interval(row), ""
            if not is_missing(row["k"]):
                text, note, uses_k = f"{text} (K={k_label(row['k'])})", K_NOTE, True
            cells.append(Cell(text, bold=flags[index][row_index], note=note))
        cells.append(Cell(auroc(means[row_index]), bold=mean_flags[row_index]))
        body.append(cells)
    table = Table([header(["selection / method", "budget", *models, "mean"])], body)
    return {"table": table, "k_note": K_NOTE if uses_k else "", "coverage": coverage(data)}
