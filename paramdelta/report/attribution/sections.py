"""The attribution page's sections: the paper's tables 2 to 4 and figures 2 and 3, in this run's numbers.

A section is a ``Section`` whose ``context(data)`` returns what its template
``templates/attribution/<id>.html.j2`` lays out (None leaves the section out), as plain
values: text, ``tables.Table`` and figures from ``plots.plot``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import stats

from paramdelta.report.attribution import paper
from paramdelta.report.attribution.data import (
    DEFAULT,
    MIN_TRAINING_SETS,
    PLUS_MINUS,
    SWEEPS,
    TRUTH,
    UNLEARNING,
    AttributionData,
    Experiment,
    final_epoch,
    method_label,
    ordered_methods,
)
from paramdelta.report.format import MISSING, best_flags, integer, is_missing, number
from paramdelta.report.plots import BUDGET_COLOURS, label, layout, panels, plot
from paramdelta.report.tables import Cell, Table, header, plain_table

# A value that exists but is undefined: r across constant influences, or across too few sets.
UNDEFINED = "n/a"
DEFAULT_NOTE = "†"
DIGITS = ".2f"
SIZES_SHORT = {True: " (equal sizes)", False: " (unequal sizes)", None: ""}
# plots.plot records figures for standalone export when given a list; this page exports none.
_NO_EXPORT = SimpleNamespace(sink=None)


@dataclass(frozen=True)
class Section:
    ID: str
    HEADING: str
    CAPTION: str
    context: Callable[[AttributionData], dict | None]


# Text.


def r_text(row: pd.Series | None) -> str:
    """A correlation row as "mean ± std" over seeds; the mean alone with one seed."""
    if row is None:
        return MISSING
    if is_missing(row["mean"]):
        return UNDEFINED
    text = fixed(row["mean"])
    return text if is_missing(row["std"]) else f"{text}{PLUS_MINUS}{fixed(row['std'])}"


def value_text(value: float | None) -> str:
    if value is None:
        return MISSING
    return UNDEFINED if is_missing(value) else fixed(value)


def fixed(value: float) -> str:
    """The value to ``DIGITS``, without the minus of a negative value that rounds to zero."""
    text = number(value, DIGITS)
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def lr_text(lr: float) -> str:
    """A learning rate as the paper writes it: 5e-05, 1e-04, 2.5e-05."""
    return np.format_float_scientific(lr, trim="-", exp_digits=2)


def block_heading(experiment: Experiment, evaluation: str) -> str:
    return f"{experiment.title}: evaluation set {evaluation}"


def _first(table: pd.DataFrame) -> pd.Series | None:
    return None if table.empty else table.iloc[0]


def _blocks(data: AttributionData):
    """(experiment, evaluation set) in page order."""
    return [(experiment, evaluation) for experiment in data.experiments for evaluation in experiment.evaluations]


def _rows(table: pd.DataFrame, experiment: Experiment, evaluation: str) -> pd.DataFrame:
    return table[(table["experiment"] == experiment.name) & (table["evaluation"] == evaluation)]


def half_width(std, n) -> np.ndarray:
    """Half the width of the 95% t interval of a mean over ``n`` seeds; NaN with fewer than two."""
    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, stats.t.ppf(0.975, n - 1) * std / np.sqrt(n), np.nan)


# Experiments.


def experiments_context(data: AttributionData) -> dict | None:
    if not data.experiments:
        return None
    epochs = data.influence[data.influence["method"].isin(UNLEARNING)].groupby("experiment")["epoch"].max()
    rows = []
    notes = []
    for experiment in data.experiments:
        found = data.influence.loc[data.influence["experiment"] == experiment.name, "method"]
        rows.append(
            [
                experiment.title,
                ", ".join(experiment.trainings) or MISSING,
                experiment.sizes_text,
                ", ".join(experiment.evaluations) or MISSING,
                experiment.seeds,
                integer(epochs.get(experiment.name)),
                ", ".join(method_label(method) for method in ordered_methods(found)) or MISSING,
            ]
        )
        if experiment.seeds == 1:
            notes.append(
                f"{experiment.title}: one seed, so its cells show the mean alone (no ± std) and its figures "
                "draw no interval."
            )
        if not experiment.correlation_defined:
            notes.append(
                f"{experiment.title}: {len(experiment.trainings)} training set(s); a Pearson r across fewer than "
                f"{MIN_TRAINING_SETS} is undefined, so its r cells read {UNDEFINED} and its r figure is empty."
            )
    columns = ["experiment", "training sets", "sizes", "evaluation sets", "seeds", "unlearning epochs", "methods"]
    return {"table": plain_table(columns, rows, label_columns=(0, 1, 2, 3, 6)), "notes": notes}


EXPERIMENTS = Section(
    "experiments",
    "Experiments",
    "What was run: per experiment its training sets (each one a candidate source of the model's behaviour) "
    "and their sizes, the evaluation sets whose loss is attributed, the number of seeds (each a fresh "
    "sample of the sets and a fresh model), the epochs of unlearning, and the attribution methods "
    "compared with the leave-one-out truth.",
    experiments_context,
)


# Table 2 form.


def table_2_context(data: AttributionData) -> dict:
    correlation = data.correlation
    rows = final_epoch(correlation[(correlation["variant"] == DEFAULT) & (correlation["method"] != TRUTH)])
    columns = _blocks(data)
    methods = ordered_methods(rows["method"])
    if not columns or not methods:
        return {"table": None, "paper": paper.table_2(), "paper_model": paper.TABLE_2_MODEL}
    found = {}
    for _, row in rows.iterrows():
        found.setdefault((row["method"], row["experiment"], row["evaluation"]), row)
    cells = {
        (method, experiment.name, evaluation): found.get((method, experiment.name, evaluation))
        for method in methods
        for experiment, evaluation in columns
    }
    means = [
        [np.nan if cells[method, e.name, v] is None else cells[method, e.name, v]["mean"] for method in methods]
        for e, v in columns
    ]
    best = [best_flags(column) for column in means]
    head = [
        [Cell("method", header=True, rowspan=2)]
        + [
            Cell(experiment.title + SIZES_SHORT[experiment.equal_sizes], header=True,
                 colspan=len(experiment.evaluations))
            for experiment in data.experiments
            if experiment.evaluations
        ],
        header(evaluation for _, evaluation in columns),
    ]  # fmt: skip
    body = [
        [Cell(method_label(method), label=True)]
        + [
            Cell(r_text(cells[method, experiment.name, evaluation]), bold=best[index][row])
            for index, (experiment, evaluation) in enumerate(columns)
        ]
        for row, method in enumerate(methods)
    ]
    return {"table": Table(head, body), "paper": paper.table_2(), "paper_model": paper.TABLE_2_MODEL}


TABLE_2 = Section(
    "table-2",
    "Table 2 form: correlation with leave-one-out",
    "How well each method's influence ranks the training sets as retraining without them does: per "
    "experiment and evaluation set, the Pearson r across training sets between the method's influence and "
    "the leave-one-out truth (the loss increase when the set is left out of training), mean ± std over "
    "seeds, at the last unlearning epoch and the main settings. 1 is a perfect linear agreement, 0 none, "
    "negative an inverted ranking; the best of each column is bold. Beside it the paper's table 2, "
    "measured on another model and other data: compare the order of the methods, not the numbers.",
    table_2_context,
)


# Table 3 form.


def standardised(influence: pd.DataFrame) -> pd.DataFrame:
    """Influence as z-scores across training sets per (experiment, method, evaluation set, seed), final
    epoch and main settings, then the mean over seeds: one row per (experiment, method, evaluation,
    training). NaN where the influences are all equal (or only one training set)."""
    rows = final_epoch(influence[influence["variant"] == DEFAULT])
    keys = ["experiment", "method", "evaluation", "seed"]
    groups = rows.groupby(keys, dropna=False)["influence"]
    spread = groups.transform("std", ddof=0)
    z = (rows["influence"] - groups.transform("mean")) / spread.where(spread > 0)
    table = rows.assign(z=z).groupby(["experiment", "method", "evaluation", "training"], dropna=False, sort=False)
    return table["z"].mean().reset_index()


def table_3_context(data: AttributionData) -> dict:
    z = standardised(data.influence)
    blocks = []
    for experiment, evaluation in _blocks(data):
        rows = _rows(z, experiment, evaluation)
        if rows.empty:
            continue
        methods = ordered_methods(rows["method"]) + ([TRUTH] if (rows["method"] == TRUTH).any() else [])
        values = {(row["method"], row["training"]): row["z"] for _, row in rows.iterrows()}
        body = [
            [method_label(method), *(value_text(values.get((method, training))) for training in experiment.trainings)]
            for method in methods
        ]
        blocks.append(
            {
                "heading": block_heading(experiment, evaluation),
                "sizes": experiment.sizes_text,
                "table": plain_table(["method", *experiment.trainings], body),
            }
        )
    return {
        "blocks": blocks,
        "paper": paper.table_3(),
        "paper_model": paper.TABLE_3_MODEL,
    }


TABLE_3 = Section(
    "table-3",
    "Table 3 form: standardised influence per training set",
    "Per experiment and evaluation set, each method's influence of every training set, standardised across "
    "the training sets (z-score per method, evaluation set and seed, then the mean over seeds; last "
    "unlearning epoch, main settings), so that methods on different scales share one: positive means the "
    "set lowered the evaluation loss more than the average set. Read each method's row against the "
    f"leave-one-out (truth) row: a good method orders and spaces the sets as the truth does. {UNDEFINED}: "
    "the method gave every set the same influence. Below, the paper's table 3 (its fine-tuning setting, "
    "which this project's synthetic tasks mirror).",
    table_3_context,
)


# Figures.


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[index : index + 2], 16) for index in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def _line(x, mean, half, name: str, colour: str, axis: int = 1, legend: bool = True, clip=None) -> list:
    """Traces of a mean line and, where it has a width, its 95% interval as a band; on panel ``axis``."""
    suffix = "" if axis == 1 else str(axis)
    axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
    x, mean, half = np.asarray(x, dtype=float), np.asarray(mean, dtype=float), np.asarray(half, dtype=float)
    traces = []
    band = ~np.isnan(half) & ~np.isnan(mean)
    if band.any():
        low, high = mean[band] - half[band], mean[band] + half[band]
        if clip is not None:
            low, high = np.clip(low, *clip), np.clip(high, *clip)
        traces.append(
            {
                "type": "scatter",
                "x": np.r_[x[band], x[band][::-1]],
                "y": np.r_[high, low[::-1]],
                "mode": "lines",
                "fill": "toself",
                "fillcolor": _rgba(colour, 0.18),
                "line": {"width": 0},
                "hoverinfo": "skip",
                "showlegend": False,
                "legendgroup": label(name),
                **axes,
            }
        )
    line = {"color": colour}
    traces.append(
        {"type": "scatter", "x": x, "y": mean, "mode": "lines+markers", "name": label(name),
         "legendgroup": label(name), "showlegend": legend, "line": line, **axes}
    )  # fmt: skip
    return traces


def _epoch_axis(epochs) -> dict:
    return {"title": "unlearning epoch", "tickmode": "array", "tickvals": sorted({int(e) for e in epochs})}


def _colour(index: int) -> str:
    return BUDGET_COLOURS[index % len(BUDGET_COLOURS)]


def influence_figure(data: AttributionData, experiment: Experiment, evaluation: str, div_id: str):
    influence = data.influence
    rows = _rows(influence, experiment, evaluation)
    rows = rows[(rows["variant"] == DEFAULT) & rows["method"].isin(UNLEARNING) & rows["epoch"].notna()]
    if rows.empty:
        return None
    summary = rows.groupby(["method", "training", "epoch"])["influence"].agg(["mean", "std", "count"]).reset_index()
    methods = [method for method in UNLEARNING if (summary["method"] == method).any()]
    traces = []
    for panel, method in enumerate(methods):
        for index, training in enumerate(experiment.trainings):
            line = summary[(summary["method"] == method) & (summary["training"] == training)].sort_values("epoch")
            if not line.empty:
                half = half_width(line["std"], line["count"])
                traces += _line(line["epoch"], line["mean"], half, training, _colour(index), panel + 1, panel == 0)
    settings = panels(
        [method_label(method) for method in methods],
        0.1,
        [_epoch_axis(summary["epoch"])] * len(methods),
        [{"title": "influence"}] + [{}] * (len(methods) - 1),
    )
    # The legend goes below: two panels beside it leave each too narrow on a half-width figure.
    legend = {"title": {"text": "training set"}, "orientation": "h", "y": -0.25}
    figure = layout(traces, block_heading(experiment, evaluation), 480, legend=legend, **settings)
    return plot(_NO_EXPORT, figure, div_id)


def _figures(data: AttributionData, make, prefix: str) -> dict:
    """One figure per (experiment, evaluation set), made by ``make``."""
    figures = []
    for index, (experiment, evaluation) in enumerate(_blocks(data)):
        figure = make(data, experiment, evaluation, f"{prefix}-{index}")
        figures.append({"heading": block_heading(experiment, evaluation), "figure": figure})
    return {"figures": figures}


def figure_2_context(data: AttributionData) -> dict:
    return _figures(data, influence_figure, "attribution-influence")


FIGURE_2 = Section(
    "figure-2",
    "Figure 2 form: influence against unlearning epoch",
    "Per experiment and evaluation set, the influence that UnTrac (left: unlearn the training set, measure "
    "the evaluation loss) and UnTrac-Inv (right: unlearn the evaluation set, measure each training set's "
    "loss) estimate after each epoch of unlearning, one line per training set: the mean over seeds with "
    "its 95% t interval as a band (none with one seed). Higher means the set lowered the evaluation loss "
    "more; the estimate is useful once the lines separate in the order the leave-one-out truth gives "
    "(table 3 form) and stay so.",
    figure_2_context,
)


def correlation_figure(data: AttributionData, experiment: Experiment, evaluation: str, div_id: str):
    rows = _rows(data.correlation, experiment, evaluation)
    rows = rows[(rows["variant"] == DEFAULT) & (rows["method"] != TRUTH)]
    unlearning = rows[rows["method"].isin(UNLEARNING) & rows["epoch"].notna()]
    if unlearning.empty or unlearning["mean"].isna().all():
        return None
    epochs = sorted(unlearning["epoch"].unique())
    traces = []
    for index, method in enumerate(method for method in UNLEARNING if (unlearning["method"] == method).any()):
        line = unlearning[unlearning["method"] == method].sort_values("epoch")
        half = half_width(line["std"], line["n_seeds"])
        traces += _line(line["epoch"], line["mean"], half, method_label(method), _colour(index), clip=(-1, 1))
    # The other methods have no epochs: their r is a level the unlearning curves can be read against.
    others = final_epoch(rows[~rows["method"].isin(UNLEARNING)])
    for index, method in enumerate(ordered_methods(others["method"])):
        r = others.loc[others["method"] == method, "mean"].iloc[0]
        if not is_missing(r):
            traces.append(
                {
                    "type": "scatter",
                    "x": [epochs[0], epochs[-1]],
                    "y": [r, r],
                    "mode": "lines",
                    "name": label(f"{method_label(method)}: {fixed(r)}"),
                    "line": {"color": _colour(index + len(UNLEARNING)), "dash": "dash", "width": 1.5},
                }
            )
    figure = layout(
        traces,
        block_heading(experiment, evaluation),
        420,
        xaxis=_epoch_axis(epochs),
        yaxis={"title": "Pearson r with leave-one-out", "range": [-1.05, 1.05]},
    )
    return plot(_NO_EXPORT, figure, div_id)


def figure_3_context(data: AttributionData) -> dict:
    return _figures(data, correlation_figure, "attribution-correlation")


FIGURE_3 = Section(
    "figure-3",
    "Figure 3 form: correlation against unlearning epoch",
    "Per experiment and evaluation set, the Pearson r between UnTrac's (and UnTrac-Inv's) influence and "
    "the leave-one-out truth after each epoch of unlearning: mean over seeds with its 95% t interval as a "
    "band (none with one seed). The dashed lines are the other methods' r, which have no epochs. The paper "
    "found both low after one step and UnTrac steady as unlearning goes on, while UnTrac-Inv can fall "
    "again after many steps.",
    figure_3_context,
)


# Table 4 form.


def _setting(row: pd.Series, sweep: str) -> str:
    return row["optimizer"] if sweep == "optimizer" else ("" if is_missing(row["lr"]) else lr_text(row["lr"]))


def sensitivity_table(rows: pd.DataFrame) -> Table | None:
    """UnTrac and UnTrac-Inv by optimizer, then by learning rate; None without sweep rows.

    The experiment's default setting fills its column where the sweep did not repeat it, marked.
    """
    rows = final_epoch(rows[rows["method"].isin(UNLEARNING)])
    if not rows["variant"].isin(list(SWEEPS)).any():
        return None
    rows = rows.assign(**{f"_{sweep}": rows.apply(_setting, axis=1, sweep=sweep) for sweep in SWEEPS})
    defaults = rows[rows["variant"] == DEFAULT]
    groups = []
    for sweep in SWEEPS:
        swept = rows[rows["variant"] == sweep]
        if swept.empty:
            continue
        values = [value for value in dict.fromkeys([*swept[f"_{sweep}"], *defaults[f"_{sweep}"]]) if value]
        if sweep == "lr":
            values.sort(key=float)
        groups.append((sweep, values))
    methods = [method for method in UNLEARNING if (rows["method"] == method).any()]
    body = []
    for method in methods:
        cells = [Cell(method_label(method), label=True)]
        for sweep, values in groups:
            for value in values:
                match = rows[(rows["method"] == method) & (rows[f"_{sweep}"] == value)]
                row = _first(match[match["variant"] == sweep])
                default = _first(match[match["variant"] == DEFAULT])
                note = DEFAULT_NOTE if row is None and default is not None else ""
                cells.append(Cell(r_text(row if row is not None else default), note=note))
        body.append(cells)
    head = [
        [Cell("method", header=True, rowspan=2)]
        + [Cell(SWEEPS[sweep], header=True, colspan=len(values)) for sweep, values in groups],
        header(value for _, values in groups for value in values),
    ]
    return Table(head, body)


def table_4_context(data: AttributionData) -> dict | None:
    blocks = []
    for experiment, evaluation in _blocks(data):
        table = sensitivity_table(_rows(data.correlation, experiment, evaluation))
        if table is not None:
            blocks.append({"heading": block_heading(experiment, evaluation), "table": table})
    if not blocks:
        return None
    marked = any(cell.note for block in blocks for row in block["table"].body for cell in row)
    return {
        "blocks": blocks,
        "mark": DEFAULT_NOTE,
        "marked": marked,
        "paper": paper.table_4(),
        "paper_model": paper.TABLE_4_MODEL,
    }


TABLE_4 = Section(
    "table-4",
    "Table 4 form: sensitivity to the unlearning optimizer and learning rate",
    "Per experiment and evaluation set that was swept, the Pearson r with leave-one-out of UnTrac and "
    "UnTrac-Inv (mean ± std over seeds, last unlearning epoch) as one hyperparameter of unlearning changes "
    "and the others stay at the experiment's main settings: first the optimizer, then the learning rate. "
    "The paper found plain SGD failing (r below 0) and the optimizers that scale their steps by the "
    "gradients' history (Adam, RMSProp, Adafactor) working; too low a learning rate leaves UnTrac "
    "unconverged.",
    table_4_context,
)

SECTIONS = (EXPERIMENTS, TABLE_2, TABLE_3, FIGURE_2, FIGURE_3, TABLE_4)
