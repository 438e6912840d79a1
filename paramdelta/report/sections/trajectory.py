"""The per-epoch trajectory: how each layer's change grows over one run, the features read from
it, and the budgets a constant-schedule run gives at once."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from paramdelta.config import DEFAULT_OPTIMIZER, PARAM_DELTA, is_param_delta
from paramdelta.features import TRAJECTORY_FEATURES
from paramdelta.report.format import (
    CLASS_NAMES,
    MISSING,
    auroc_with_interval,
    budget_heading,
    budget_sort_key,
    by_key,
)
from paramdelta.report.plots import BUDGET_COLOURS, label, layout, panels, plot
from paramdelta.report.sections.optimizer import setting_name
from paramdelta.report.tables import plain_table

ID = "trajectory"
HEADING = "Trajectory: each layer's change after every epoch"
CAPTION = (
    "With snapshots.trajectory every run records each layer's distance from the base weights after every "
    "epoch. The figure draws, for each model's longest recorded run, the mean over a layer group's layers "
    "of that distance, averaged over the members (solid) and the non-members (dashed), on a log scale, and "
    "beside it how much more (or less, below zero) the members moved than the non-members. The "
    "first table scores the curves without labels (features.trajectory: a layer's mean change over the "
    "epochs, its slope against the epoch, and the epoch that grew it most as a fraction of the run; each "
    "normalised per layer, averaged over the layers, negated) beside the run's final change over all layers. "
    "The second puts the thesis's design, one run per budget with a cosine schedule over that run's own "
    "steps (the train: block), beside a constant-schedule setting whose smaller budgets are read from the "
    "states its longest run passed through: the same numbers a run of that many epochs would give, at the "
    "cost of one run instead of several. The two differ in more than cost: under the cosine schedule the "
    "learning rate falls to zero at the end of every budget, so a short budget takes its last steps at a "
    "small learning rate, where a constant schedule keeps every step at the full rate."
)
PER_DATASET = True
GROUP_ORDER = ("embedding", "attention", "mlp", "norm")
FEATURE_COLUMNS = [
    "model",
    "setting",
    "budget",
    *(f"trajectory-{f}" for f in TRAJECTORY_FEATURES),
    "final change, all layers",
]


def _longest(curve: pd.DataFrame) -> tuple[str, str] | None:
    """The (method, budget) with the most epochs recorded; the train: block's own first on a tie."""
    if curve.empty:
        return None
    epochs = curve.groupby(["method", "budget"])["epoch"].max().reset_index()
    epochs["_own"] = epochs["method"] != PARAM_DELTA
    best = epochs.sort_values(["epoch", "_own"], ascending=[False, True], kind="stable").iloc[0]
    return str(best["method"]), str(best["budget"])


def _line(values: pd.Series, name: str, group: str, line: dict, **settings) -> go.Scatter:
    """One curve over the epochs (the index of `values`)."""
    x, y = values.index.tolist(), values.to_numpy()
    return go.Scatter(x=x, y=y, mode="lines", name=label(name), legendgroup=group, line=line, **settings)


def _figure(data, model: str, index: int) -> dict:
    curve = data.curve[data.curve["model"] == model]
    chosen = _longest(curve)
    if chosen is None:
        return {"name": model, "figure": None}
    method, budget = chosen
    rows = curve[(curve["method"] == method) & (curve["budget"] == budget)]
    groups = [g for g in GROUP_ORDER if (rows["group"] == g).any()]
    groups += sorted(set(rows["group"]) - set(groups))
    traces = []
    for colour, group in zip(BUDGET_COLOURS * 2, groups):
        means = {member: rows[(rows["group"] == group) & (rows["label"] == member)].groupby("epoch")["l2"].mean()
                 for member in (1, 0)}  # fmt: skip
        for member, mean in means.items():
            dash = "solid" if member else "dash"
            traces.append(_line(mean, f"{group}, {CLASS_NAMES[member]}", group, {"color": colour, "dash": dash}))
        ratio = (means[1] / means[0] - 1.0) * 100
        line = {"color": colour}
        traces.append(
            _line(ratio, f"{group}: members vs non-members", group, line, showlegend=False, xaxis="x2", yaxis="y2")
        )
    sides = panels(
        ["mean change of a layer", "members' mean change against the non-members'"],
        0.1,
        [{"title": {"text": "epoch"}}] * 2,
        [{"title": {"text": "||theta - theta_base||"}, "type": "log"}, {"title": {"text": "difference (%)"}}],
    )
    title = f"{model}: {setting_name(method)}, {budget_heading(budget)}"
    figure = layout(traces, title, 440, **sides)
    return {"name": model, "figure": plot(data, figure, f"trajectory-{data.anchor}-m{index}")}


def _feature_rows(data) -> list[list[str]]:
    metrics = data.metrics[data.metrics["method"].map(is_param_delta)]
    features = metrics[metrics["selection"].str.startswith("trajectory-")]
    rows = []
    order = {model: i for i, model in enumerate(data.models)}
    groups = features.groupby(["model", "method", "budget"], sort=False)
    keys = sorted(
        groups.groups,
        key=lambda key: (order.get(key[0], len(order)), key[1] != PARAM_DELTA, key[1], budget_sort_key(key[2])),
    )
    for model, method, budget in keys:
        found = by_key(groups.get_group((model, method, budget)), ["selection"])
        final = by_key(metrics[(metrics["model"] == model) & (metrics["method"] == method)], ["budget", "selection"])
        rows.append(
            [
                model,
                setting_name(method),
                budget_heading(budget),
                *(
                    auroc_with_interval(found[(f"trajectory-{f}",)]) if (f"trajectory-{f}",) in found else MISSING
                    for f in TRAJECTORY_FEATURES
                ),
                auroc_with_interval(final[(budget, "all")]) if (budget, "all") in final else MISSING,
            ]
        )
    return rows


def _constant_settings(config: dict) -> list[str]:
    if not (config.get("snapshots") or {}).get("trajectory"):
        return []
    return [name for name, changes in (config.get("optimizers") or {}).items() if changes.get("schedule") == "constant"]


def _budget_rows(data) -> tuple[list[str], list[list[str]]]:
    """Per model and numeric budget: the train: block's own run, and each constant-schedule setting."""
    settings = _constant_settings(data.config)
    if not settings:
        return [], []
    metrics = data.metrics[data.metrics["selection"] == "all"]
    columns = ["model", "budget", f"{DEFAULT_OPTIMIZER}: a run of its own (cosine schedule)"]
    columns += [f"{name}: constant schedule" for name in settings]
    rows = []
    for model in data.models:
        ours = metrics[metrics["model"] == model]
        own_budgets = {name: set(map(str, (data.config["optimizers"][name].get("budgets") or []))) for name in settings}
        budgets = sorted(
            {
                b
                for b in ours["budget"]
                if b.isdigit() and ours[ours["budget"] == b]["method"].map(is_param_delta).any()
            },
            key=budget_sort_key,
        )
        found = by_key(ours, ["method", "budget"])
        for budget in budgets:
            cells = [model, budget_heading(budget)]
            row = found.get((PARAM_DELTA, budget))
            cells.append(auroc_with_interval(row) if row is not None else MISSING)
            for name in settings:
                row = found.get((f"{PARAM_DELTA}:{name}", budget))
                text = auroc_with_interval(row) if row is not None else MISSING
                if row is not None and own_budgets[name] and budget not in own_budgets[name]:
                    text += " (read from the trajectory)"
                cells.append(text)
            rows.append(cells)
    return columns, rows


def context(data) -> dict:
    figures = [_figure(data, model, index) for index, model in enumerate(data.models)] if not data.curve.empty else []
    features = _feature_rows(data)
    columns, budgets = _budget_rows(data)
    return {
        "models": figures,
        "features": plain_table(FEATURE_COLUMNS, features, label_columns=3) if features else None,
        "budgets": plain_table(columns, budgets, label_columns=2) if budgets else None,
    }
