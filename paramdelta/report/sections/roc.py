"""ROC curves per model, on linear and log-log axes, with the TPR at low FPR."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from paramdelta.features import METHOD
from paramdelta.metrics import roc_points
from paramdelta.report.format import (
    BLIND,
    MISSING,
    auroc,
    auroc_with_interval,
    best_row,
    is_missing,
    number,
    variant_label,
)
from paramdelta.report.plots import BASELINE_COLOURS, BUDGET_COLOURS, label, layout, panels, plot
from paramdelta.report.tables import plain_table

ID = "roc"
HEADING = "ROC curves"
CAPTION = (
    "Two plots per model, linear and log-log axes: the ROC curve of the best parameter-change selection "
    "at each epoch budget (solid) and of the main baselines (dashed: loss, Min-K% and Min-K%++ at their "
    "best K, SaMIA*zlib; dotted: the blind baseline). A curve shows the share of members detected (true "
    "positive rate) against the share of non-members wrongly flagged (false positive rate) as the "
    "threshold is lowered; the diagonal is chance. The log-log plot shows the low false positive rates "
    "that matter for an attack; the table below reads the TPR at 1% and 5% FPR."
)
PER_DATASET = True
# Baselines drawn beside the parameter-change curves; the K ones at their best K.
ROC_BASELINES = ("loss", "mink", "minkpp", "samia-zlib", BLIND)
ROC_POINTS = 500
TPR_COLUMNS = ("tpr_at_1fpr", "fpr_at_1fpr", "tpr_at_5fpr", "fpr_at_5fpr")


def context(data) -> dict:
    n_nonmembers = int(data.texts.drop_duplicates("text_id")["label"].eq(0).sum())
    return {
        "models": [_model(data, model, index) for index, model in enumerate(data.models)],
        "n_nonmembers": n_nonmembers,
        "fpr_step": f"{1 / n_nonmembers:.3g}" if n_nonmembers else "",
    }


def thin_roc(points: pd.DataFrame, limit: int = ROC_POINTS) -> pd.DataFrame:
    """At most ``limit`` points of a ROC curve, kept where the linear and the log-log plot look.

    Takes the last curve point at or below targets spaced evenly in FPR, in log FPR and in
    TPR, so the curve keeps its shape on both axes; first and last points always stay.
    """
    if len(points) <= limit:
        return points
    fpr, tpr = points["fpr"].to_numpy(float), points["tpr"].to_numpy(float)
    third = (limit - 2) // 3
    smallest = fpr[fpr > 0].min()
    indices = np.r_[
        np.searchsorted(fpr, np.linspace(0, 1, third), side="right") - 1,
        np.searchsorted(fpr, np.logspace(math.log10(smallest), 0, third), side="right") - 1,
        np.searchsorted(tpr, np.linspace(0, 1, third), side="right") - 1,
    ]
    keep = np.unique(np.r_[0, np.clip(indices, 0, len(points) - 1), len(points) - 1])
    return points.iloc[keep]


def _scores_of(data, row: pd.Series) -> pd.DataFrame:
    scores = data.scores
    same_variant = (
        (scores["method"] == row["method"])
        & (scores["selection"] == row["selection"])
        & (scores["budget"] == row["budget"])
        & (scores["k"].isna() if is_missing(row["k"]) else scores["k"] == row["k"])
    )
    chosen = scores[same_variant & (scores["model"] == row["model"])]
    if chosen.empty and row["method"] == BLIND:
        # The blind baseline never looks at a model: any model's copy of its scores will do.
        first = scores[same_variant]["model"].head(1)
        chosen = scores[same_variant & scores["model"].isin(first)]
    return chosen


def _curves(data, model: str) -> list[tuple[pd.Series, str, dict]]:
    """(metrics row, curve name, line style): the best selection per budget, then the baselines."""
    metrics = data.metrics[(data.metrics["model"] == model) & data.metrics["auroc"].notna()]
    curves = []
    for index, budget in enumerate(data.budgets):
        row = best_row(metrics[(metrics["method"] == METHOD) & (metrics["budget"] == budget)])
        if row is not None:
            colour = BUDGET_COLOURS[index % len(BUDGET_COLOURS)]
            curves.append((row, variant_label(row), {"color": colour}))
    blind = data.metrics[data.metrics["method"] == BLIND]
    for method in ROC_BASELINES:
        candidates = blind if method == BLIND and not (metrics["method"] == BLIND).any() else metrics
        row = best_row(candidates[candidates["method"] == method])
        if row is not None:
            style = {"color": BASELINE_COLOURS[method], "dash": "dot" if method == BLIND else "dash"}
            curves.append((row, variant_label(row), style))
    return curves


def _tpr_cell(row: pd.Series, tpr: str, fpr: str) -> str:
    if is_missing(row[tpr]):
        return MISSING
    return f"{number(row[tpr], '.2f')} (FPR {number(row[fpr], '.3f')})"


def _model(data, model: str, index: int) -> dict:
    """One figure with the linear and the log-log ROC plot side by side, and the TPR table."""
    curves = []
    for row, name, style in _curves(data, model):
        scores = _scores_of(data, row)
        points = roc_points(scores["label"].to_numpy(int), scores["score"].to_numpy(float))
        if not points.empty:
            n = max(int((scores["label"] == 0).sum()), int((scores["label"] == 1).sum()))
            curves.append((row, name, style, thin_roc(points), n))
    if not curves:
        return {"name": model, "figure": None, "table": None}
    # Below one text's step on either axis the log-log plot has nothing to show.
    floor = 1 / (2 * max(n for *_, n in curves))
    traces = []
    for axes, low in (({}, 0.0), ({"xaxis": "x2", "yaxis": "y2"}, floor)):
        traces.append(
            go.Scatter(
                x=[low, 1], y=[low, 1], mode="lines", name="chance", legendgroup="chance", showlegend=not axes,
                line={"dash": "dot", "color": "grey", "width": 1}, **axes,
            )
        )  # fmt: skip
        for row, name, style, points, _ in curves:
            if axes:
                points = points[(points["fpr"] > 0) & (points["tpr"] > 0)]
            traces.append(
                go.Scatter(
                    x=points["fpr"].to_numpy(np.float32),
                    y=points["tpr"].to_numpy(np.float32),
                    mode="lines",
                    name=label(f"{name} ({auroc(row['auroc'])})"),
                    legendgroup=label(name),
                    showlegend=not axes,
                    line=style,
                    **axes,
                )
            )
    linear = {"range": [0, 1], "constrain": "domain"}
    log = {"type": "log", "range": [math.log10(floor), 0], "constrain": "domain"}
    fpr, tpr = {"title": {"text": "false positive rate"}}, {"title": {"text": "true positive rate"}}
    sides = panels(
        ["linear axes", "log-log axes"],
        0.1,
        [{**fpr, **linear}, {**fpr, **log}],
        [{**tpr, **linear, "scaleanchor": "x"}, {**tpr, **log, "scaleanchor": "x2"}],
    )
    figure = layout(traces, f"{model}: ROC curves", 480, legend={"font": {"size": 11}}, **sides)
    table = None
    if all(column in data.metrics.columns for column in TPR_COLUMNS):
        rows = [
            [
                name,
                auroc_with_interval(row),
                _tpr_cell(row, "tpr_at_1fpr", "fpr_at_1fpr"),
                _tpr_cell(row, "tpr_at_5fpr", "fpr_at_5fpr"),
            ]
            for row, name, *_ in curves
        ]
        table = plain_table(
            ["curve", "AUROC [95% interval]", "TPR at 1% FPR (FPR reached)", "TPR at 5% FPR (FPR reached)"], rows
        )
    return {"name": model, "figure": plot(data, figure, f"roc-{data.anchor}-m{index}"), "table": table}
