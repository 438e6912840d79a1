"""Where membership shows in the model: a heat map of the per-layer AUROC, block by module group."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from paramdelta.report.format import budget_heading, is_missing, number
from paramdelta.report.plots import label, layout, plot

NO_BLOCK = "embed/final"
GROUPS = ("attention", "mlp", "norm", "embedding", "other")
ID = "layers"
HEADING = "Where membership shows in the model: AUROC per layer"
CAPTION = (
    "One heat map per model and epoch budget: columns are transformer blocks (layers outside any block, "
    f"such as the embeddings, the final norm and the output head, in the column {NO_BLOCK}), rows are "
    "module groups, and the colour is the AUROC of the normalised change of that layer alone, oriented "
    "so that higher means members change less. Where a block has several layers of a group (e.g. q, k, "
    "v, o) the cell shows their mean; hover for each layer's name and AUROC and the maximum. Red is "
    "above chance (0.5, white), blue below; every map of a data set shares one colour range."
)
PER_DATASET = True


def context(data) -> dict:
    if data.layers.empty:
        return {"figures": None}
    half_width = _colour_half_width(data.layers)
    figures = []
    for model_index, model in enumerate(data.models):
        for budget_index, budget in enumerate(data.budgets):
            layers = data.layers[(data.layers["model"] == model) & (data.layers["budget"] == budget)]
            if not layers.empty:
                div_id = f"layers-{data.anchor}-m{model_index}-b{budget_index}"
                figures.append(_figure(data, layers, f"{model}, {budget_heading(budget)}", div_id, half_width))
    return {"figures": figures}


def _colour_half_width(layers: pd.DataFrame) -> float:
    """One colour range for every heat map of a data set, centred on 0.5, at least +-0.05."""
    deviation = (layers["auroc"].astype(float) - 0.5).abs().max()
    return max(0.05, math.ceil((0.0 if is_missing(deviation) else deviation) * 20) / 20)


def _figure(data, layers: pd.DataFrame, title: str, div_id: str, half_width: float):
    layers = layers.sort_values("layer_index", kind="stable")
    blocks = pd.to_numeric(layers["block"], errors="coerce").fillna(-1).astype(int)
    columns = ([NO_BLOCK] if (blocks < 0).any() else []) + [str(block) for block in sorted(set(blocks[blocks >= 0]))]
    column_of = blocks.map(lambda block: NO_BLOCK if block < 0 else str(block))
    present = list(dict.fromkeys(layers["group"]))
    groups = [group for group in GROUPS if group in present] + [group for group in present if group not in GROUPS]
    z = np.full((len(groups), len(columns)), np.nan)
    text = [["" for _ in columns] for _ in groups]
    cells = layers.assign(_column=column_of.to_numpy()).groupby(["group", "_column"], sort=False)
    for (group, column), cell in cells:
        row, col = groups.index(group), columns.index(column)
        aurocs = cell["auroc"].astype(float)
        z[row, col] = aurocs.mean()
        names = "<br>".join(f"{label(name)}: {number(value, '.3f')}" for name, value in zip(cell["layer"], aurocs))
        count = f"{len(cell)} layer{'s' if len(cell) > 1 else ''}"
        text[row][col] = f"{count}, max {number(aurocs.max(), '.3f')}<br>{names}"
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=[label(group) for group in groups],
            text=text,
            hovertemplate="block %{x}, %{y}<br>mean AUROC %{z:.3f}<br>%{text}<extra></extra>",
            colorscale="RdBu_r",
            zmid=0.5,
            zmin=0.5 - half_width,
            zmax=0.5 + half_width,
            colorbar={"title": {"text": "mean AUROC"}},
            xgap=1,
            ygap=1,
        )
    )
    figure = layout(
        figure,
        title,
        150 + 45 * len(groups),
        xaxis={"title": "block", "type": "category"},
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return plot(data, figure, div_id)
