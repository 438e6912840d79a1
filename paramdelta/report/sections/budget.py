"""AUROC against epoch budget per model, and its Pearson correlation (the thesis's 5.2.4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from paramdelta.features import METHOD
from paramdelta.metrics import MEAN_OVER_MODELS
from paramdelta.report.format import (
    auroc,
    auroc_with_interval,
    best_row,
    budget_heading,
    by_key,
    integer,
    number,
    variant_label,
)
from paramdelta.report.plots import BASELINE_COLOURS, BUDGET_COLOURS, label, layout, plot
from paramdelta.report.tables import plain_table

ID = "budget"
HEADING = "AUROC against epoch budget"
CAPTION = (
    "Per model, the AUROC of the parameter-change score over all layers and of the best selection at "
    "each epoch budget, with 95% bootstrap intervals as error bars, and the loss baseline (which has no "
    "budget) as a dashed line. The thesis found the AUROC rising with the number of epochs (its Pearson "
    "r = 0.954, p = 0.046 over 5 to 30 epochs); the title of each plot and the table give this run's r "
    "and p over the numeric budgets (early stopping has no epoch count and is left out)."
)
PER_DATASET = True


def context(data) -> dict:
    rows = []
    for model in data.models:
        row = _correlation_row(data, model)
        if row is not None:
            rows.append([model, number(row["r"], ".2f"), number(row["p"], ".2g"), integer(row["n"])])
    # The thesis's form (5.2.4): the AUROC averaged over the models first, one point per budget.
    mean = _correlation_row(data, MEAN_OVER_MODELS)
    if mean is not None:
        name = f"{MEAN_OVER_MODELS} (thesis 5.2.4: r = 0.954, p = 0.046)"
        rows.append([name, number(mean["r"], ".2f"), number(mean["p"], ".2g"), integer(mean["n"])])
    return {
        "models": [_figure(data, model, index) for index, model in enumerate(data.models)],
        "method": METHOD,
        "correlation": plain_table(["model", "r", "p", "budgets"], rows) if rows else None,
    }


def _correlation_row(data, model: str) -> pd.Series | None:
    correlation = data.correlation
    rows = correlation[
        (correlation["model"] == model)
        & (correlation["method"] == METHOD)
        & (correlation["selection"] == "all")
        & correlation["k"].isna()
    ]
    return None if rows.empty else rows.iloc[0]


def _trace(rows: list[pd.Series | None], positions: list[float], name: str, colour: str) -> go.Scatter:
    present = [(position, row) for position, row in zip(positions, rows) if row is not None]
    aurocs = np.array([row["auroc"] for _, row in present], dtype=float)
    low = np.array([row["auroc_lo"] for _, row in present], dtype=float)
    high = np.array([row["auroc_hi"] for _, row in present], dtype=float)
    return go.Scatter(
        x=[position for position, _ in present],
        y=aurocs,
        mode="lines+markers",
        name=label(name),
        line={"color": colour},
        error_y={"type": "data", "array": np.nan_to_num(high - aurocs), "arrayminus": np.nan_to_num(aurocs - low)},
        text=[label(f"{variant_label(row)}: {auroc_with_interval(row)}") for _, row in present],
        hovertemplate="%{text}<extra></extra>",
    )


def _figure(data, model: str, index: int) -> dict:
    metrics = data.metrics[(data.metrics["model"] == model) & data.metrics["auroc"].notna()]
    ours = metrics[metrics["method"] == METHOD]
    budgets = [budget for budget in data.budgets if (ours["budget"] == budget).any()]
    if not budgets:
        return {"name": model, "figure": None}
    main = by_key(ours[ours["selection"] == "all"], ["budget"])
    all_rows = [main.get((budget,)) for budget in budgets]
    best_rows = [best_row(ours[ours["budget"] == budget]) for budget in budgets]
    positions = list(range(len(budgets)))
    traces = [
        _trace(all_rows, [p - 0.06 for p in positions], f"{METHOD}, all layers", BUDGET_COLOURS[0]),
        _trace(best_rows, [p + 0.06 for p in positions], f"{METHOD}, best selection", BUDGET_COLOURS[1]),
    ]
    loss = best_row(metrics[metrics["method"] == "loss"])
    if loss is not None:
        traces.append(
            go.Scatter(
                x=[-0.3, len(budgets) - 0.7],
                y=[loss["auroc"]] * 2,
                mode="lines",
                name=label(f"loss baseline (no budget): {auroc(loss['auroc'])}"),
                line={"dash": "dash", "color": BASELINE_COLOURS["loss"]},
            )
        )
    correlation = _correlation_row(data, model)
    title = model
    if correlation is not None:
        title += f": r = {number(correlation['r'], '.2f')}, p = {number(correlation['p'], '.2g')}"
    figure = layout(
        traces,
        title,
        400,
        xaxis={
            "title": "epoch budget",
            "tickvals": positions,
            "ticktext": [label(budget_heading(budget)) for budget in budgets],
            "range": [-0.5, len(budgets) - 0.5],
        },
        yaxis={"title": "AUROC"},
        shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0.5, "y1": 0.5,
                 "line": {"color": "grey", "dash": "dot", "width": 1}}],
    )  # fmt: skip
    return {"name": model, "figure": plot(data, figure, f"budget-{data.anchor}-m{index}")}
