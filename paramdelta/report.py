"""Self-contained HTML report of one run: the thesis's tables 5.1 and 5.2, tests and ROC curves.

The page opens from disk without network: plotly.js is embedded once in the page and
every figure only refers to it. Each section is one function that returns an HTML
fragment; the sections about results repeat once per data set. Every piece of text
from the inputs is HTML-escaped, also inside figures, whose labels plotly reads as HTML.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from paramdelta.atomic import atomic_file
from paramdelta.features import METHOD, SELECTIONS
from paramdelta.metrics import roc_points

AUROC_DIGITS = 2
MISSING = "–"
K_NOTE = "*"

REQUIRED_COLUMNS = {
    "metrics": ("dataset", "model", "budget", "method", "selection", "k", "auroc", "auroc_lo", "auroc_hi"),
    "scores": ("dataset", "model", "budget", "text_id", "label", "method", "selection", "k", "score"),
    "ttest": ("dataset", "model", "budget", "mean_members", "mean_nonmembers", "t", "p", "n_members", "n_nonmembers"),
    "correlation": ("dataset", "model", "method", "selection", "k", "r", "p", "n"),
    "texts": ("dataset", "model", "budget", "text_id", "label", "status", "failure", "failed_epoch"),
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem; color: #222; }
nav ul { display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; list-style: none; padding: 0; }
section { margin-top: 2.5rem; }
.caption, .note { max-width: 55rem; color: #444; }
.note { font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; }
th { background: #f2f2f2; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.label { text-align: left; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(30rem, 1fr)); gap: 1rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
<script>{plotly_js}</script>
</head>
<body>
<header><h1>{title}</h1><p>Generated {generated}</p></header>
<nav><ul>{nav}</ul></nav>
<main>
{sections}
</main>
</body>
</html>
"""


@dataclass(frozen=True)
class RunData:
    """The run's tables, all restricted to one data set once ``for_dataset`` has been applied."""

    metrics: pd.DataFrame
    scores: pd.DataFrame
    ttest: pd.DataFrame
    correlation: pd.DataFrame
    texts: pd.DataFrame
    meta: dict
    anchor: str = "run"

    @property
    def datasets(self) -> list[str]:
        return self._in_config_order("datasets", self.metrics["dataset"], self.texts["dataset"])

    @property
    def models(self) -> list[str]:
        return self._in_config_order("models", self.metrics["model"], self.texts["model"])

    def _in_config_order(self, key: str, *columns: pd.Series) -> list[str]:
        """The names found in the tables, in the order the configuration lists them, others after."""
        found = _ordered_unique(*columns)
        configured = [str(name) for name in self.meta.get("config", {}).get(key, ())]
        return [name for name in configured if name in found] + [name for name in found if name not in configured]

    @property
    def budgets(self) -> list[str]:
        return ordered_budgets([*self.metrics["budget"], *self.texts["budget"]])

    def for_dataset(self, dataset: str, index: int) -> RunData:
        def rows(table: pd.DataFrame) -> pd.DataFrame:
            return table[table["dataset"] == dataset]

        return replace(
            self,
            metrics=rows(self.metrics),
            scores=rows(self.scores),
            ttest=rows(self.ttest),
            correlation=rows(self.correlation),
            texts=rows(self.texts),
            anchor=f"d{index}",
        )

    def main_rows(self) -> pd.DataFrame:
        """The thesis's headline configuration: the parameter-change score over all layers."""
        return self.metrics[(self.metrics["method"] == METHOD) & (self.metrics["selection"] == "all")]


@dataclass(frozen=True)
class Section:
    id: str
    heading: str
    caption: str
    body: Callable[[RunData], str]
    per_dataset: bool = True


def budget_sort_key(budget: str) -> tuple:
    """Numeric budgets in numeric order, then the others (early stopping, "es") by name."""
    try:
        return (0, float(budget), "")
    except ValueError:
        return (1, math.inf, budget)


def ordered_budgets(budgets: Iterable) -> list[str]:
    return sorted({str(budget) for budget in budgets}, key=budget_sort_key)


def budget_heading(budget: str) -> str:
    if budget == "es":
        return "early stopping"
    return f"{budget} epochs" if budget_sort_key(budget)[0] == 0 else budget


def _ordered_unique(*columns: pd.Series) -> list[str]:
    return list(dict.fromkeys(str(value) for column in columns for value in column))


def _budget_label(value) -> str:
    # A CSV reader turns a budget column without "es" into integers or floats.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _prepare(table: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [column for column in REQUIRED_COLUMNS[name] if column not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}")
    table = table.copy()
    if "budget" in table.columns:
        table["budget"] = table["budget"].map(_budget_label)
    if "selection" in table.columns:
        # Baselines have no layer selection; "" keeps them comparable with ==.
        table["selection"] = table["selection"].fillna("").astype(str)
    for column in ("dataset", "model", "method", "text_id", "status"):
        if column in table.columns:
            table[column] = table[column].astype(str)
    return table


def _is_missing(value) -> bool:
    return value is None or bool(pd.isna(value))


def _number(value, spec: str) -> str:
    return MISSING if _is_missing(value) else format(float(value), spec)


def _auroc(value) -> str:
    return _number(value, f".{AUROC_DIGITS}f")


def _auroc_with_interval(row: pd.Series) -> str:
    if _is_missing(row["auroc_lo"]) or _is_missing(row["auroc_hi"]):
        return _auroc(row["auroc"])
    return f"{_auroc(row['auroc'])} [{_auroc(row['auroc_lo'])}, {_auroc(row['auroc_hi'])}]"


def _integer(value) -> str:
    return MISSING if _is_missing(value) else str(int(value))


def _k_label(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def _escape(text) -> str:
    return escape(str(text), quote=True)


def _cell(
    text,
    *,
    header: bool = False,
    bold: bool = False,
    label: bool = False,
    note: str = "",
    colspan: int = 1,
    rowspan: int = 1,
) -> str:
    tag = "th" if header else "td"
    attributes = "".join(
        [
            ' class="label"' if label else "",
            f' colspan="{colspan}"' if colspan > 1 else "",
            f' rowspan="{rowspan}"' if rowspan > 1 else "",
        ]
    )
    content = _escape(text)
    if bold:
        content = f"<strong>{content}</strong>"
    if note:
        content += f"<sup>{_escape(note)}</sup>"
    return f"<{tag}{attributes}>{content}</{tag}>"


def _table(head: Sequence[Sequence[str]], body: Sequence[Sequence[str]]) -> str:
    """A table from rows of cells made by ``_cell``."""

    def rows(cells: Sequence[Sequence[str]]) -> str:
        return "".join(f"<tr>{''.join(row)}</tr>" for row in cells)

    return f"<table><thead>{rows(head)}</thead><tbody>{rows(body)}</tbody></table>"


def _plain_table(columns: Sequence[str], rows: Iterable[Sequence], label_columns: int = 1) -> str:
    """A one-level table whose first ``label_columns`` columns are left-aligned text."""
    head = [[_cell(column, header=True) for column in columns]]
    body = [[_cell(value, label=index < label_columns) for index, value in enumerate(row)] for row in rows]
    return _table(head, body)


def _best_flags(values: Sequence[float]) -> list[bool]:
    """Which values are the column's best as displayed, so equal shown values are all marked."""
    shown = [None if _is_missing(value) else round(float(value), AUROC_DIGITS) for value in values]
    present = [value for value in shown if value is not None]
    if not present:
        return [False] * len(values)
    return [value == max(present) for value in shown]


def _mean(values: Iterable[float]) -> float:
    return float(pd.Series(list(values), dtype=float).mean())


def _by_key(table: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, pd.Series]:
    return {tuple(str(row[key]) for key in keys): row for _, row in table.iterrows()}


def _in_run_order(data: RunData, table: pd.DataFrame, *then: str) -> pd.DataFrame:
    """Rows sorted by model in run order, budget in budget order, then by ``then``."""
    positions = {
        "model": {model: index for index, model in enumerate(data.models)},
        "budget": {budget: index for index, budget in enumerate(data.budgets)},
    }

    def key(column: pd.Series) -> pd.Series:
        return column.map(positions[column.name]) if column.name in positions else column

    return table.sort_values(["model", "budget", *then], key=key, kind="stable")


def _best_over_k(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, selection, budget, model): the best AUROC over k, ties to the smaller k."""
    ranked = metrics.sort_values(["auroc", "k"], ascending=[False, True], na_position="last", kind="stable")
    return ranked.drop_duplicates(["method", "selection", "budget", "model"])


def run_summary(data: RunData) -> str:
    rows = []
    for index, dataset in enumerate(data.datasets):
        subset = data.for_dataset(dataset, index)
        texts = subset.texts
        labels = texts.drop_duplicates("text_id")["label"]
        rows.append(
            [
                dataset,
                int((labels == 1).sum()),
                int((labels == 0).sum()),
                ", ".join(subset.models),
                ", ".join(budget_heading(budget) for budget in subset.budgets),
                len(texts),
                int((texts["status"] == "ok").sum()),
                int((texts["status"] == "failed").sum()),
            ]
        )
    columns = ["data set", "members", "non-members", "models", "budgets", "training runs", "ok", "failed"]
    return _plain_table(columns, rows)


def table_5_1(data: RunData) -> str:
    main = _by_key(data.main_rows(), ["budget", "model"])
    if not main:
        return f"<p>No results of {_escape(METHOD)} with selection all.</p>"
    models, budgets = data.models, data.budgets
    aurocs = {
        budget: [main[budget, model]["auroc"] if (budget, model) in main else math.nan for model in models]
        for budget in budgets
    }
    means = {budget: _mean(aurocs[budget]) for budget in budgets}
    best_by_model = [_best_flags([aurocs[budget][index] for budget in budgets]) for index in range(len(models))]
    best_mean = _best_flags([means[budget] for budget in budgets])

    head = [[_cell(column, header=True) for column in ["budget", *models, "mean"]]]
    body = []
    for row_index, budget in enumerate(budgets):
        cells = [_cell(budget_heading(budget), label=True)]
        for index, model in enumerate(models):
            text = _auroc_with_interval(main[budget, model]) if (budget, model) in main else MISSING
            cells.append(_cell(text, bold=best_by_model[index][row_index]))
        cells.append(_cell(_auroc(means[budget]), bold=best_mean[row_index]))
        body.append(cells)
    return _table(head, body)


def _table_5_2_rows(metrics: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(label, method, selection): the thesis's selections in its order, then baselines."""
    ours = metrics[metrics["method"] == METHOD]["selection"].unique().tolist()
    known = [selection for selection in SELECTIONS if selection in ours]
    rows = [(selection, METHOD, selection) for selection in known + sorted(set(ours) - set(known))]
    baselines = metrics[metrics["method"] != METHOD][["method", "selection"]].drop_duplicates()
    for method, selection in baselines.itertuples(index=False):
        rows.append((f"{method} ({selection})" if selection else method, method, selection))
    return rows


def table_5_2(data: RunData) -> str:
    if data.metrics.empty:
        return "<p>No results.</p>"
    best = _by_key(_best_over_k(data.metrics), ["method", "selection", "budget", "model"])
    rows = _table_5_2_rows(data.metrics)
    models, budgets = data.models, data.budgets
    columns = [(budget, model) for budget in budgets for model in [*models, "mean"]]

    # Per row, one (AUROC, K) per column; K is NaN for the mean and for selections without K.
    cells_by_row = []
    for _, method, selection in rows:
        cells = []
        for budget in budgets:
            chosen = [best.get((method, selection, budget, model)) for model in models]
            cells += [(math.nan, math.nan) if row is None else (row["auroc"], row["k"]) for row in chosen]
            cells.append((_mean(auroc for auroc, _ in cells[-len(models) :]), math.nan))
        cells_by_row.append(cells)
    best_flags = [_best_flags([cells[col][0] for cells in cells_by_row]) for col in range(len(columns))]

    head = [
        [
            _cell("selection / method", header=True, rowspan=2),
            *(_cell(budget_heading(budget), header=True, colspan=len(models) + 1) for budget in budgets),
        ],
        [_cell(model, header=True) for _, model in columns],
    ]
    body = []
    uses_k = False
    for row_index, ((label, _, _), cells) in enumerate(zip(rows, cells_by_row)):
        row_cells = [_cell(label, label=True)]
        for col_index, (auroc, k) in enumerate(cells):
            text, note = _auroc(auroc), ""
            if not _is_missing(k):
                text, note, uses_k = f"{text} (K={_k_label(k)})", K_NOTE, True
            row_cells.append(_cell(text, bold=best_flags[col_index][row_index], note=note))
        body.append(row_cells)
    footnote = (
        f'<p class="note">{_escape(K_NOTE)} The K (percentage of entries or layers kept) with the best AUROC '
        "on these same texts. Choosing K on the evaluation set is optimistic: an attacker without the "
        "labels could not make this choice, so these cells overstate what the selection achieves.</p>"
        if uses_k
        else ""
    )
    return _table(head, body) + footnote


def member_tests(data: RunData) -> str:
    ttest = _in_run_order(data, data.ttest)
    ttest_rows = [
        [
            row["model"],
            budget_heading(row["budget"]),
            _integer(row["n_members"]),
            _integer(row["n_nonmembers"]),
            _number(row["mean_members"], ".4g"),
            _number(row["mean_nonmembers"], ".4g"),
            _number(row["t"], ".2f"),
            _number(row["p"], ".2g"),
        ]
        for _, row in ttest.iterrows()
    ]
    ttest_html = (
        _plain_table(
            ["model", "budget", "members", "non-members", "mean change, members", "mean change, non-members", "t", "p"],
            ttest_rows,
            label_columns=2,
        )
        if ttest_rows
        else "<p>No t-test results.</p>"
    )

    correlation = data.correlation
    order = {model: index for index, model in enumerate(data.models)}
    main = correlation[
        (correlation["method"] == METHOD) & (correlation["selection"] == "all") & correlation["k"].isna()
    ].sort_values("model", key=lambda column: column.map(order), kind="stable")
    correlation_rows = [
        [row["model"], _number(row["r"], ".2f"), _number(row["p"], ".2g"), _integer(row["n"])]
        for _, row in main.iterrows()
    ]
    correlation_html = (
        _plain_table(["model", "r", "p", "budgets"], correlation_rows)
        if correlation_rows
        else "<p>No correlation results.</p>"
    )
    return (
        "<h4>Welch t-test of the mean normalised parameter change</h4>"
        + ttest_html
        + f"<h4>Pearson correlation of epoch budget and AUROC ({_escape(METHOD)}, all layers)</h4>"
        + correlation_html
    )


def _roc_trace(data: RunData, row: pd.Series, name: str, dash: str) -> go.Scatter | None:
    scores = data.scores
    chosen = scores[
        (scores["model"] == row["model"])
        & (scores["budget"] == row["budget"])
        & (scores["method"] == row["method"])
        & (scores["selection"] == row["selection"])
        & (scores["k"].isna() if _is_missing(row["k"]) else scores["k"] == row["k"])
    ]
    points = roc_points(chosen["label"].to_numpy(int), chosen["score"].to_numpy(float))
    if points.empty:
        return None
    return go.Scatter(
        x=points["fpr"],
        y=points["tpr"],
        mode="lines",
        name=_escape(f"{name} (AUROC {_auroc(row['auroc'])})"),
        line={"dash": dash},
    )


def _best_other_selection(data: RunData, model: str) -> pd.Series | None:
    """At the budget where all layers score best, the best row of any other selection."""
    main = data.main_rows()
    aurocs = main[(main["model"] == model) & main["auroc"].notna()].set_index("budget")["auroc"]
    if aurocs.empty:
        return None
    # max() keeps the first of equal budgets in budget order.
    best_budget = max((budget for budget in data.budgets if budget in aurocs.index), key=aurocs.get)
    metrics = data.metrics
    others = metrics[
        (metrics["model"] == model)
        & (metrics["method"] == METHOD)
        & (metrics["selection"] != "all")
        & (metrics["budget"] == best_budget)
        & metrics["auroc"].notna()
    ]
    if others.empty:
        return None
    return others.sort_values(["auroc", "k"], ascending=[False, True], kind="stable").iloc[0]


def _roc_figure(data: RunData, model: str, div_id: str) -> str:
    main = _by_key(data.main_rows(), ["model", "budget"])
    traces = [
        _roc_trace(data, main[model, budget], f"all layers, {budget_heading(budget)}", "solid")
        for budget in data.budgets
        if (model, budget) in main
    ]
    other = _best_other_selection(data, model)
    if other is not None:
        k = "" if _is_missing(other["k"]) else f" K={_k_label(other['k'])}"
        name = f"{other['selection']}{k}, {budget_heading(other['budget'])}"
        traces.append(_roc_trace(data, other, name, "dash"))
    traces = [trace for trace in traces if trace is not None]
    if not traces:
        return f"<p>No scores for {_escape(model)}.</p>"
    figure = go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"}),
            *traces,
        ]
    )
    figure.update_layout(
        title=_escape(model),
        template="plotly_white",
        height=480,
        xaxis={"title": "false positive rate", "range": [0, 1], "constrain": "domain"},
        yaxis={"title": "true positive rate", "range": [0, 1], "scaleanchor": "x"},
        margin={"t": 50, "b": 50},
    )
    return figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False, "responsive": True}
    )


def roc_curves(data: RunData) -> str:
    figures = "".join(
        f"<div>{_roc_figure(data, model, f'roc-{data.anchor}-m{index}')}</div>"
        for index, model in enumerate(data.models)
    )
    return f'<div class="figures">{figures}</div>'


def failed_texts(data: RunData) -> str:
    failed = data.texts[data.texts["status"] == "failed"]
    if failed.empty:
        return "<p>none</p>"
    failed = _in_run_order(data, failed, "text_id")
    rows = [
        [row["model"], budget_heading(row["budget"]), row["text_id"], row["failure"], _integer(row["failed_epoch"])]
        for _, row in failed.iterrows()
    ]
    return _plain_table(["model", "budget", "text_id", "failure", "failed epoch"], rows, label_columns=4)


def configuration(data: RunData) -> str:
    config = json.dumps(data.meta.get("config", {}), indent=2, default=str)
    versions = _plain_table(["package", "version"], sorted(data.meta.get("versions", {}).items()))
    return (
        f"<details><summary>Configuration</summary><pre>{_escape(config)}</pre></details>"
        f"<details><summary>Versions</summary>{versions}</details>"
    )


SECTIONS = (
    Section(
        "summary",
        "Run summary",
        "What was run: for each data set the number of member and non-member texts, the models that were "
        "continually pre-trained on every text, the epoch budgets, and how many of these training runs "
        "(one per text, model and budget) finished or failed. A failed run leaves its text without a score "
        "for that model and budget, so the results below rest on the runs that finished.",
        run_summary,
        per_dataset=False,
    ),
    Section(
        "table-5-1",
        "Table 5.1 form: AUROC by epoch budget and model",
        f"Attack AUROC of the parameter-change score over all layers ({METHOD}, selection all), in the form "
        "of the thesis's table 5.1: one row per epoch budget (early stopping last), one column per model and "
        "the mean over models. A cell reads AUROC [95% stratified bootstrap interval]; 0.5 is chance and 1 "
        "separates members from non-members perfectly. The best value of each column is bold.",
        table_5_1,
    ),
    Section(
        "table-5-2",
        "Table 5.2 form: AUROC by layer selection",
        "AUROC of the score aggregated over each selection of layers, in the form of the thesis's table 5.2, "
        "followed by the baseline attacks where they were run. Columns are grouped by epoch budget, with one "
        "column per model and the mean over models. For the top-K selections a cell shows the AUROC of the "
        "best K and that K. The best value of each column is bold.",
        table_5_2,
    ),
    Section(
        "member-tests",
        "Members vs non-members: t-test and budget correlation",
        "Whether members move the weights less than non-members: per model and budget, the mean normalised "
        "parameter change over all layers of members and of non-members, with Welch's t statistic (negative "
        "when members change less) and its two-sided p value. The second table gives Pearson's r between the "
        "epoch budget and the all-layer AUROC per model, with its p value and the number of budgets it rests "
        "on; early stopping has no epoch count and is left out.",
        member_tests,
    ),
    Section(
        "roc",
        "ROC curves",
        "One plot per model: the ROC curve of the all-layer score for each epoch budget and, dashed, the best "
        "other layer selection at the budget where the all-layer score does best. A curve shows the share of "
        "members detected (true positive rate) against the share of non-members wrongly flagged (false "
        "positive rate) as the threshold is lowered; the dotted diagonal is chance, and the region of low "
        "false positive rate matters most for an attack.",
        roc_curves,
    ),
    Section(
        "failed",
        "Failed texts",
        "Training runs that did not finish, with the failure and the epoch in which it happened. These texts "
        "have no score for that model and budget and are missing from the tables above.",
        failed_texts,
    ),
    Section(
        "config",
        "Configuration and versions",
        "The configuration of this run and the versions of the software it used, for reproducing it.",
        configuration,
        per_dataset=False,
    ),
)


def _section(section: Section, data: RunData) -> str:
    if section.per_dataset:
        several = len(data.datasets) > 1
        parts = []
        for index, dataset in enumerate(data.datasets):
            subset = data.for_dataset(dataset, index)
            heading = f"<h3>Data set {_escape(dataset)}</h3>" if several else ""
            block_id = f"{section.id}-{subset.anchor}"
            parts.append(f'<div class="dataset" id="{block_id}">{heading}{section.body(subset)}</div>')
        body = "".join(parts) or "<p>No data.</p>"
    else:
        body = section.body(data)
    return (
        f'<section id="{section.id}"><h2>{_escape(section.heading)}</h2>'
        f'<p class="caption">{_escape(section.caption)}</p>{body}</section>'
    )


def render(
    metrics: pd.DataFrame,
    scores: pd.DataFrame,
    ttest: pd.DataFrame,
    correlation: pd.DataFrame,
    texts: pd.DataFrame,
    meta: dict,
) -> str:
    """The whole report page as one HTML document."""
    metrics = _prepare(metrics, "metrics")
    key = ["dataset", "model", "budget", "method", "selection", "k"]
    duplicated = metrics[metrics.duplicated(key, keep=False)]
    if not duplicated.empty:
        raise ValueError(f"metrics hold more than one row for {duplicated[key].drop_duplicates().to_dict('records')}")
    data = RunData(
        metrics=metrics,
        scores=_prepare(scores, "scores"),
        ttest=_prepare(ttest, "ttest"),
        correlation=_prepare(correlation, "correlation"),
        texts=_prepare(texts, "texts"),
        meta=meta,
    )
    nav = "".join(f'<li><a href="#{section.id}">{_escape(section.heading)}</a></li>' for section in SECTIONS)
    return PAGE.format(
        title=_escape(meta.get("title", "Parameter-change membership inference")),
        css=CSS,
        plotly_js=get_plotlyjs(),
        generated=_escape(meta.get("generated", "")),
        nav=nav,
        sections="\n".join(_section(section, data) for section in SECTIONS),
    )


def write(path: str | os.PathLike, html: str) -> None:
    """Write the page so that it appears complete or not at all."""
    with atomic_file(path) as partial:
        partial.write_text(html, encoding="utf-8")
