"""Training on each text: loss curves of members and non-members, and early stopping's epochs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from paramdelta.report.format import CLASS_NAMES, budget_heading, budget_sort_key, is_missing, number
from paramdelta.report.plots import MEMBER_COLOURS, layout, plot
from paramdelta.report.tables import plain_table

ID = "training"
HEADING = "Training on each text: loss curves and early stopping"
CAPTION = (
    "Per model, the training loss on the text over the epochs of the largest fixed budget: the median of "
    "members and of non-members, with a band from the first to the third quartile. Members start lower "
    "if the model has learned them. Below, for early stopping, how many epochs each text ran before its "
    "loss stopped improving, members against non-members."
)
PER_DATASET = True
STOPPING_COLUMNS = [
    "model", "members", "median epochs, members", "IQR, members", "non-members", "median epochs, non-members",
    "IQR, non-members",
]  # fmt: skip


def context(data) -> dict:
    budget = _loss_budget(data)
    losses = None
    if budget is not None:
        losses = [_loss_figure(data, model, index, budget) for index, model in enumerate(data.models)]
    has_es = "epochs_run" in data.texts.columns and (data.texts["budget"] == "es").any()
    stopping = [_stopping(data, model, index) for index, model in enumerate(data.models)] if has_es else []
    rows = [row for _, row in stopping if row is not None]
    return {
        "losses": losses,
        "has_es": has_es,
        "stopping_figures": [figure for figure, _ in stopping if figure is not None],
        "stopping": plain_table(STOPPING_COLUMNS, rows) if rows else None,
    }


def _loss_matrix(losses: pd.Series) -> np.ndarray:
    """Per-text loss lists as a texts x epochs matrix, NaN after a run's last epoch."""
    lists = [np.asarray([] if is_missing(value) else value, dtype=float).ravel() for value in losses]
    width = max((values.size for values in lists), default=0)
    matrix = np.full((len(lists), width), np.nan)
    for row, values in enumerate(lists):
        matrix[row, : values.size] = values
    return matrix


def _loss_budget(data) -> str | None:
    """The largest fixed budget with recorded losses."""
    if "losses" not in data.texts.columns:
        return None
    fixed = [budget for budget in data.budgets if budget_sort_key(budget)[0] == 0]
    for budget in reversed(fixed):
        losses = data.texts[data.texts["budget"] == budget]["losses"]
        if any(not is_missing(value) and len(value) for value in losses):
            return budget
    return None


def _loss_figure(data, model: str, index: int, budget: str) -> dict:
    texts = data.texts[(data.texts["model"] == model) & (data.texts["budget"] == budget)]
    traces = []
    for member in (1, 0):
        matrix = _loss_matrix(texts[texts["label"] == member]["losses"])
        counts = np.isfinite(matrix).sum(axis=0)
        epochs = np.flatnonzero(counts) if matrix.size else np.array([], dtype=int)
        if not epochs.size:
            continue
        with np.errstate(all="ignore"):
            q1, median, q3 = np.nanpercentile(matrix[:, epochs], [25, 50, 75], axis=0)
        x = epochs + 1
        colour = MEMBER_COLOURS[member]
        traces.append(
            go.Scatter(
                x=np.r_[x, x[::-1]],
                y=np.r_[q3, q1[::-1]],
                fill="toself",
                fillcolor=colour,
                opacity=0.2,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=CLASS_NAMES[member],
            )
        )
        traces.append(
            go.Scatter(
                x=x,
                y=median,
                mode="lines",
                name=f"{CLASS_NAMES[member]}, median",
                line={"color": colour},
                legendgroup=CLASS_NAMES[member],
                customdata=counts[epochs],
                hovertemplate="epoch %{x}: median loss %{y:.4f} over %{customdata} texts<extra></extra>",
            )
        )
    if not traces:
        return {"name": model, "figure": None}
    figure = layout(
        traces,
        f"{model}: training loss, {budget_heading(budget)}",
        400,
        xaxis={"title": "epoch"},
        yaxis={"title": "training loss on the text"},
    )
    return {"name": model, "figure": plot(data, figure, f"loss-{data.anchor}-m{index}")}


def _quantile(values: pd.Series, q: float) -> float:
    return values.quantile(q) if len(values) else math.nan


def _stopping(data, model: str, index: int) -> tuple:
    """The histogram of epochs run under early stopping, and its table row; (None, None) without es runs."""
    texts = data.texts[(data.texts["model"] == model) & (data.texts["budget"] == "es")]
    epochs = pd.to_numeric(texts["epochs_run"], errors="coerce")
    if epochs.notna().sum() == 0:
        return None, None
    traces, row = [], [model]
    for member in (1, 0):
        values = epochs[(texts["label"] == member).to_numpy()].dropna().astype(int)
        counts = values.value_counts().sort_index()
        median = values.median() if len(values) else math.nan
        iqr = number(_quantile(values, 0.25), ".1f") + "–" + number(_quantile(values, 0.75), ".1f")
        row += [len(values), number(median, ".1f"), iqr]
        traces.append(
            go.Bar(
                x=counts.index.to_numpy(),
                y=counts.to_numpy(),
                name=f"{CLASS_NAMES[member]} (median {number(median, '.1f')})",
                marker={"color": MEMBER_COLOURS[member]},
            )
        )
    figure = layout(
        traces,
        f"{model}: epochs run under early stopping",
        340,
        barmode="group",
        xaxis={"title": "epochs run"},
        yaxis={"title": "texts"},
    )
    return plot(data, figure, f"es-{data.anchor}-m{index}"), row
