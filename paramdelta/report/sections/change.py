"""Members against non-members: how much the parameters change, and Welch's t-test."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from paramdelta.report.format import CLASS_NAMES, budget_heading, in_run_order, integer, number
from paramdelta.report.plots import MEMBER_COLOURS, label, layout, panels, plot
from paramdelta.report.tables import plain_table

ID = "change"
HEADING = "Members vs non-members: how much the parameters change"
CAPTION = (
    "The thesis's hypothesis: a text the model has already learned (a member) moves its weights less. "
    "Per model, box plots of the parameter change of members and non-members at each epoch budget "
    "(box: quartiles; line: median; whiskers: the last values within 1.5 times the interquartile range; "
    "outliers not drawn). The buttons switch between the raw global L2 norm of the change, the mean raw "
    "layer change, and the mean min-max normalised layer change. The table gives Welch's t-test of the "
    "last of these (the thesis's 5.1.4): t is negative when members change less."
)
PER_DATASET = True
CHANGE_MEASURES = {
    "l2_total": "L2 norm of the whole parameter change",
    "mean_l2": "mean over layers of the layer's L2 change",
    "mean_norm": "mean over layers of the min-max normalised change (the t-test's quantity)",
}
TTEST_COLUMNS = [
    "model", "budget", "members", "non-members", "mean change, members", "mean change, non-members", "t", "p",
]  # fmt: skip


def context(data) -> dict:
    rows = [
        [
            row["model"],
            budget_heading(row["budget"]),
            integer(row["n_members"]),
            integer(row["n_nonmembers"]),
            number(row["mean_members"], ".4g"),
            number(row["mean_nonmembers"], ".4g"),
            number(row["t"], ".2f"),
            number(row["p"], ".2g"),
        ]
        for _, row in in_run_order(data, data.ttest).iterrows()
    ]
    return {
        "has_change": not data.change.empty,
        "models": [_figure(data, model, index) for index, model in enumerate(data.models)]
        if not data.change.empty
        else [],
        "ttest": plain_table(TTEST_COLUMNS, rows, label_columns=2) if rows else None,
    }


def box_stats(values: np.ndarray) -> dict | None:
    """Tukey box statistics: quartiles, whiskers at the last values within 1.5 IQR, mean and count."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    spread = 1.5 * (q3 - q1)
    return {
        "q1": q1,
        "median": median,
        "q3": q3,
        "lowerfence": values[values >= q1 - spread].min(),
        "upperfence": values[values <= q3 + spread].max(),
        "mean": values.mean(),
        "n": int(values.size),
    }


def _figure(data, model: str, index: int) -> dict:
    """Box plots of members and non-members, one panel per budget with its own scale."""
    change = data.change[data.change["model"] == model]
    budgets = [budget for budget in data.budgets if (change["budget"] == budget).any()]
    if not budgets:
        return {"name": model, "figure": None}
    measures = list(CHANGE_MEASURES)
    traces, owners = [], []  # owners: the measure of each trace, for the buttons
    for measure_index, measure in enumerate(measures):
        for column, budget in enumerate(budgets, start=1):
            for member in (1, 0):
                values = change[(change["budget"] == budget) & (change["label"] == member)][measure]
                stats = box_stats(values.to_numpy(float))
                if stats is None:
                    continue
                suffix = "" if column == 1 else str(column)
                traces.append(
                    go.Box(
                        x=[CLASS_NAMES[member]],
                        xaxis=f"x{suffix}",
                        yaxis=f"y{suffix}",
                        **{key: [stats[key]] for key in ("q1", "median", "q3", "lowerfence", "upperfence", "mean")},
                        name=f"{CLASS_NAMES[member]}",
                        legendgroup=CLASS_NAMES[member],
                        showlegend=column == 1 and measure_index == 0,
                        marker={"color": MEMBER_COLOURS[member]},
                        visible=measure_index == 0,
                        hovertext=f"n = {stats['n']}",
                    )
                )
                owners.append(measure_index)
    buttons = [
        {
            "label": measure,
            "method": "update",
            "args": [
                {"visible": [owner == measure_index for owner in owners]},
                {"title.text": label(f"{model}: {CHANGE_MEASURES[measure]}")},
            ],
        }
        for measure_index, measure in enumerate(measures)
    ]
    sides = panels(
        [budget_heading(budget) for budget in budgets],
        min(0.08, 0.4 / len(budgets)),
        [{"showticklabels": False}] * len(budgets),
        [{}] * len(budgets),
    )
    figure = layout(
        traces,
        f"{model}: {CHANGE_MEASURES[measures[0]]}",
        440,
        **sides,
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "x": 1, "y": 1.2,
                      "xanchor": "right", "yanchor": "bottom", "showactive": True}],
        margin={"t": 120, "b": 30},
        title={"y": 0.97, "font": {"size": 14}},
    )  # fmt: skip
    return {"name": model, "figure": plot(data, figure, f"change-{data.anchor}-m{index}")}
