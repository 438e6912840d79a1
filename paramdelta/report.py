"""Self-contained HTML report of one run: the thesis's tables 5.1 and 5.2, the baselines, plots.

The page opens from disk without network: plotly.js is embedded once in the page and
every figure only refers to it. Each section is one function that returns an HTML
fragment; the sections about results repeat once per data set. Every piece of text
from the inputs is HTML-escaped, also inside figures, whose labels plotly reads as HTML.

The page stays small whatever the number of texts: ROC curves are thinned to at most
``ROC_POINTS`` points, distributions are drawn from summary statistics (box plots,
per-epoch quantiles, histograms) instead of one point per text, and long lists are capped.
``figures`` returns the same figures one standalone HTML document each, for export.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from paramdelta.atomic import atomic_file
from paramdelta.features import K_SELECTIONS, METHOD, SELECTIONS
from paramdelta.metrics import MEAN_OVER_MODELS, roc_points

AUROC_DIGITS = 2
MISSING = "–"
K_NOTE = "*"
# The budget of a baseline: it scores the target model as it is, with no per-text training.
NO_BUDGET = "-"
BLIND = "blind"
# Baseline attacks in the order tables list them; others follow by name.
BASELINES = ("loss", "zlib", "lowercase", "ref", "mink", "minkpp", "samia", "samia-zlib", BLIND)
METHOD_LABELS = {
    "loss": "loss",
    "zlib": "zlib ratio",
    "lowercase": "lowercase ratio",
    "ref": "reference model",
    "mink": "Min-K% Prob",
    "minkpp": "Min-K%++",
    "samia": "SaMIA",
    "samia-zlib": "SaMIA*zlib",
    BLIND: "blind (bag of words)",
}
# Baselines drawn beside the parameter-change curves; the K ones at their best K.
ROC_BASELINES = ("loss", "mink", "minkpp", "samia-zlib", BLIND)
GROUPS = ("attention", "mlp", "norm", "embedding", "other")
NO_BLOCK = "embed/final"
ROC_POINTS = 500
FAILED_ROWS = 100
MEMBER_COLOURS = {1: "#1f77b4", 0: "#ff7f0e"}
CLASS_NAMES = {1: "members", 0: "non-members"}
BUDGET_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
BASELINE_COLOURS = {
    "loss": "#444444", "mink": "#8c564b", "minkpp": "#bcbd22", "samia-zlib": "#17becf", BLIND: "#999999",
}  # fmt: skip
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
# A few lines of plotly_white: the full template is ~7 kB a figure and slow to validate.
_AXIS = {"gridcolor": "#ebf0f8", "zerolinecolor": "#ebf0f8", "linecolor": "#ebf0f8", "automargin": True}
TEMPLATE = {
    "layout": {
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "hovermode": "closest",
        "xaxis": _AXIS,
        "yaxis": _AXIS,
    }
}


@dataclass(frozen=True)
class ThesisRow:
    label: str
    method: str
    selection: str
    budget: str
    k: str | float | None  # None: no K; "best": best K on the evaluation set; a number: that K if run
    published: tuple[float, float, float, float]  # in THESIS_MODELS order
    mean: float


THESIS_DATASET = {"hf": "swj0419/WikiMIA", "split": "WikiMIA_length32"}
THESIS_MODELS = {
    "EleutherAI/gpt-j-6b": "GPT-J-6B",
    "facebook/opt-6.7b": "OPT-6.7B",
    "EleutherAI/pythia-6.9b": "Pythia-6.9B",
    "meta-llama/Llama-2-7b-hf": "Llama-2-7B",
}
# The thesis's published AUROCs on WikiMIA, 32-word split (seeds/000, section 5.2): row
# "20epoch" of table 5.1 and rows "top-K% 30epoch", "top-K% ES", "Min-K%" and "SaMIA*zlib"
# of table 5.2, as METHOD.md section 1 lists them; the mean is the one the thesis printed.
# Its top-K% keeps the parameters whose change is largest, with the best K from 1 to 50 on
# the evaluation set (here topk-elements); Min-K% Prob used its paper's best setting, K = 20%.
THESIS_RESULTS = (
    ThesisRow("all parameters, 20 epochs", METHOD, "all", "20", None, (0.66, 0.51, 0.64, 0.53), 0.585),
    ThesisRow("top-K%, 30 epochs", METHOD, "topk-elements", "30", "best", (0.69, 0.71, 0.61, 0.64), 0.660),
    ThesisRow("top-K%, early stopping", METHOD, "topk-elements", "es", "best", (0.63, 0.57, 0.76, 0.56), 0.634),
    ThesisRow("Min-K% Prob", "mink", "", NO_BUDGET, 20.0, (0.71, 0.67, 0.71, 0.58), 0.668),
    ThesisRow("SaMIA*zlib", "samia-zlib", "", NO_BUDGET, None, (0.75, 0.81, 0.75, 0.66), 0.743),
)

REQUIRED_COLUMNS = {
    "metrics": ("dataset", "model", "budget", "method", "selection", "k", "auroc", "auroc_lo", "auroc_hi"),
    "scores": ("dataset", "model", "budget", "text_id", "label", "method", "selection", "k", "score"),
    "ttest": ("dataset", "model", "budget", "mean_members", "mean_nonmembers", "t", "p", "n_members", "n_nonmembers"),
    "correlation": ("dataset", "model", "method", "selection", "k", "r", "p", "n"),
    "texts": ("dataset", "model", "budget", "text_id", "label", "status", "failure", "failed_epoch"),
    "layers": ("dataset", "model", "budget", "layer", "layer_index", "group", "block", "auroc"),
    "change": ("dataset", "model", "budget", "text_id", "label", "l2_total", "mean_l2", "mean_norm"),
    "topk_cv": (
        "dataset",
        "model",
        "budget",
        "selection",
        "k_eval",
        "auroc_eval",
        "auroc_cv",
        "auroc_cv_lo",
        "auroc_cv_hi",
        "k_folds",
    ),  # fmt: skip
    "benchmarks": ("rule", "job", "s", "max_rss", "cpu_time", "gpus"),
}
CHANGE_MEASURES = {
    "l2_total": "L2 norm of the whole parameter change",
    "mean_l2": "mean over layers of the layer's L2 change",
    "mean_norm": "mean over layers of the min-max normalised change (the t-test's quantity)",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 84rem; padding: 0 1rem; color: #222; }
nav ul { display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; list-style: none; padding: 0; }
section { margin-top: 2.5rem; }
.caption, .note { max-width: 58rem; color: #444; }
.note { font-size: 0.9em; }
.warning { border-left: 0.4rem solid #c0392b; background: #fdecea; padding: 0.6rem 1rem; margin: 1rem 0;
           max-width: 58rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; }
th { background: #f2f2f2; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.label { text-align: left; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(30rem, 1fr)); gap: 1rem; }
.figures > * { min-width: 0; }
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
{warnings}
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
    layers: pd.DataFrame
    change: pd.DataFrame
    topk_cv: pd.DataFrame
    benchmarks: pd.DataFrame
    meta: dict
    anchor: str = "run"
    dataset: str | None = None
    # When a list, every figure drawn is appended to it as (div id, data set, figure).
    sink: list | None = None

    @property
    def config(self) -> dict:
        config = self.meta.get("config") or {}
        return config if isinstance(config, dict) else {}

    @property
    def datasets(self) -> list[str]:
        return self._in_config_order("datasets", self.metrics["dataset"], self.texts["dataset"])

    @property
    def models(self) -> list[str]:
        return self._in_config_order("models", self.metrics["model"], self.texts["model"])

    def _in_config_order(self, key: str, *columns: pd.Series) -> list[str]:
        """The names found in the tables, in the order the configuration lists them, others after."""
        found = _ordered_unique(*columns)
        configured = [str(name) for name in self.config.get(key, ())]
        return [name for name in configured if name in found] + [name for name in found if name not in configured]

    @property
    def budgets(self) -> list[str]:
        """The epoch budgets of the per-text training, without the baselines' "-"."""
        budgets = ordered_budgets([*self.metrics["budget"], *self.texts["budget"]])
        return [budget for budget in budgets if budget != NO_BUDGET]

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
            layers=rows(self.layers),
            change=rows(self.change),
            topk_cv=rows(self.topk_cv),
            anchor=f"d{index}",
            dataset=dataset,
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
    if budget == NO_BUDGET:
        return MISSING
    return f"{budget} epochs" if budget_sort_key(budget)[0] == 0 else budget


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _ordered_unique(*columns: pd.Series) -> list[str]:
    return list(dict.fromkeys(str(value) for column in columns for value in column))


def _budget_label(value) -> str:
    # A CSV reader turns a budget column without "es" into integers or floats.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _prepare(table: pd.DataFrame | None, name: str) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in REQUIRED_COLUMNS[name]})
    missing = [column for column in REQUIRED_COLUMNS[name] if column not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}")
    table = table.copy()
    if "budget" in table.columns:
        table["budget"] = table["budget"].map(_budget_label)
    if "selection" in table.columns:
        # Baselines have no layer selection; "" keeps them comparable with ==.
        table["selection"] = table["selection"].fillna("").astype(str)
    for column in ("dataset", "model", "method", "text_id", "status", "layer", "group", "rule"):
        if column in table.columns:
            table[column] = table[column].astype(str)
    for column in ("auroc", "auroc_lo", "auroc_hi", "k", "score", "l2_total", "mean_l2", "mean_norm", "s"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _is_missing(value) -> bool:
    return value is None or (not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value)))


def _number(value, spec: str) -> str:
    return MISSING if _is_missing(value) else format(float(value), spec)


def _auroc(value) -> str:
    return _number(value, f".{AUROC_DIGITS}f")


def _interval(value, low, high) -> str:
    if _is_missing(low) or _is_missing(high):
        return _auroc(value)
    return f"{_auroc(value)} [{_auroc(low)}, {_auroc(high)}]"


def _auroc_with_interval(row: pd.Series) -> str:
    return _interval(row["auroc"], row["auroc_lo"], row["auroc_hi"])


def _integer(value) -> str:
    return MISSING if _is_missing(value) else str(int(float(value)))


def _k_label(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def _duration(seconds: float) -> str:
    if _is_missing(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


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


def _plain_table(columns: Sequence[str], rows: Iterable[Sequence], label_columns: int | Iterable[int] = 1) -> str:
    """A one-level table whose label columns (the first ``label_columns``, or those listed) are left-aligned."""
    labels = set(range(label_columns)) if isinstance(label_columns, int) else set(label_columns)
    head = [[_cell(column, header=True) for column in columns]]
    body = [[_cell(value, label=index in labels) for index, value in enumerate(row)] for row in rows]
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


def _ranked(metrics: pd.DataFrame) -> pd.DataFrame:
    """Best AUROC first; ties to the thesis's selection order, then to the smaller k."""
    order = {selection: index for index, selection in enumerate(("", *SELECTIONS))}
    ranked = metrics.assign(_order=metrics["selection"].map(order).fillna(len(order)))
    ranked = ranked.sort_values(
        ["auroc", "_order", "k"], ascending=[False, True, True], na_position="last", kind="stable"
    )
    return ranked.drop(columns="_order")


def _best_over_k(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, selection, budget, model): the best AUROC over k, ties to the smaller k."""
    return _ranked(metrics).drop_duplicates(["method", "selection", "budget", "model"])


def _best_row(metrics: pd.DataFrame) -> pd.Series | None:
    present = metrics[metrics["auroc"].notna()]
    return None if present.empty else _ranked(present).iloc[0]


def _baseline_methods(metrics: pd.DataFrame) -> list[str]:
    found = [str(method) for method in metrics["method"].unique() if method != METHOD]
    return [method for method in BASELINES if method in found] + sorted(set(found) - set(BASELINES))


def _variant_label(row: pd.Series, *, budget: bool = True, model: bool = False) -> str:
    """A metrics row as words: the method or selection, its K, its budget and model."""
    if row["method"] == METHOD:
        text = f"{METHOD} {row['selection']}"
    else:
        text = method_label(row["method"]) + (f" ({row['selection']})" if row["selection"] else "")
    if not _is_missing(row["k"]):
        text += f" K={_k_label(row['k'])}"
    if budget and row["budget"] != NO_BUDGET:
        text += f", {budget_heading(row['budget'])}"
    if model and row["method"] != BLIND:
        text += f", {row['model']}"
    return text


def _plot(data: RunData, figure: go.Figure, div_id: str) -> str:
    """A figure as a div that uses the page's plotly.js; recorded for ``figures`` too."""
    if data.sink is not None:
        data.sink.append((div_id, data.dataset, figure))
    html = figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
    return f'<div class="figure">{html}</div>'


def _figures(parts: Iterable[str]) -> str:
    return f'<div class="figures">{"".join(parts)}</div>'


def _layout(traces: Sequence | go.Figure, heading: str, height: int, **layout) -> go.Figure:
    """A figure of ``traces`` with the page's look; ``heading`` is escaped here."""
    title = {"text": _escape(heading), **layout.pop("title", {})}
    # Built in one go: update_layout and make_subplots cost ten times as much, per figure.
    data = traces.data if isinstance(traces, go.Figure) else traces
    return go.Figure(
        data,
        layout={"title": title, "template": TEMPLATE, "height": height, "margin": {"t": 60, "b": 50}, **layout},
    )


def _panels(titles: Sequence[str], gap: float, x: Sequence[dict], y: Sequence[dict]) -> dict:
    """Layout of side-by-side panels (axes x, x2, ... and y, y2, ...) titled ``titles`` (escaped here)."""
    width = (1 - gap * (len(titles) - 1)) / len(titles)
    layout, annotations = {}, []
    for index, (title, x_axis, y_axis) in enumerate(zip(titles, x, y)):
        suffix = "" if index == 0 else str(index + 1)
        left = index * (width + gap)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}", **x_axis}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", **y_axis}
        annotations.append(
            {"text": _escape(title), "x": left + width / 2, "y": 1, "xref": "paper", "yref": "paper",
             "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}
        )  # fmt: skip
    return {**layout, "annotations": annotations}


# Sections ------------------------------------------------------------------------------


def _dataset_rows(data: RunData) -> list[list]:
    rows = []
    for index, dataset in enumerate(data.datasets):
        subset = data.for_dataset(dataset, index)
        texts = subset.texts
        labels = texts.drop_duplicates("text_id")["label"]
        methods = [METHOD] if (subset.metrics["method"] == METHOD).any() else []
        rows.append(
            [
                dataset,
                int((labels == 1).sum()),
                int((labels == 0).sum()),
                ", ".join(subset.models),
                ", ".join(budget_heading(budget) for budget in subset.budgets),
                ", ".join(methods + _baseline_methods(subset.metrics)),
                len(texts),
                int((texts["status"] == "ok").sum()),
                int((texts["status"] == "failed").sum()),
            ]
        )
    return rows


def _compute_summary(data: RunData) -> str:
    jobs = data.meta.get("jobs") or {}
    bench = data.benchmarks
    n_jobs = jobs.get("n_jobs")
    facts = [f"Jobs run: {_integer(n_jobs) if n_jobs is not None else len(bench)}"]
    if n_jobs is None:
        facts[0] += " (counted from the benchmark records of finished jobs)"
    facts.append(f"jobs failed: {_integer(jobs['n_failed']) if jobs.get('n_failed') is not None else 'not known'}")
    if bench.empty:
        return f"<p>{_escape('; '.join(facts))}. No benchmark records, so no compute time.</p>"
    seconds = pd.to_numeric(bench["s"], errors="coerce")
    gpus = pd.to_numeric(bench["gpus"], errors="coerce").fillna(0)
    cpu = pd.to_numeric(bench["cpu_time"], errors="coerce")
    rss = pd.to_numeric(bench["max_rss"], errors="coerce")
    gpu_hours = seconds * gpus / 3600
    facts += [
        f"wall time of all jobs together: {_duration(seconds.sum())}",
        f"GPU hours: {gpu_hours.sum():.2f}",
        f"CPU time: {_duration(cpu.sum()) if cpu.notna().any() else MISSING}",
    ]
    frame = pd.DataFrame({"rule": bench["rule"], "s": seconds, "gpu_h": gpu_hours, "cpu": cpu, "rss": rss})
    rows = []
    for rule, group in frame.groupby("rule", sort=False):
        rows.append(
            [
                rule,
                len(group),
                _duration(group["s"].sum()),
                _duration(group["s"].mean()),
                _duration(group["s"].max()),
                _number(group["rss"].max(), ".0f"),
                _duration(group["cpu"].sum()) if group["cpu"].notna().any() else MISSING,
                f"{group['gpu_h'].sum():.2f}",
            ]
        )
    rows.sort(key=lambda row: -frame[frame["rule"] == row[0]]["s"].sum())
    table = _plain_table(
        ["rule", "jobs", "wall time, total", "per job, mean", "per job, max", "peak memory (MB)", "CPU time",
         "GPU hours"],
        rows,
    )  # fmt: skip
    return f"<p>{_escape('; '.join(facts))}.</p><h4>Compute per rule</h4>{table}"


def run_summary(data: RunData) -> str:
    columns = [
        "data set", "members", "non-members", "models", "budgets", "methods", "training runs", "ok", "failed",
    ]  # fmt: skip
    return _plain_table(columns, _dataset_rows(data), label_columns=(0, 3, 4, 5)) + _compute_summary(data)


@dataclass(frozen=True)
class BlindCheck:
    blind: pd.Series
    best_attack: pd.Series | None

    @property
    def warns(self) -> bool:
        return self.best_attack is not None and float(self.blind["auroc"]) >= float(self.best_attack["auroc"])


def blind_check(data: RunData) -> BlindCheck | None:
    """The blind baseline against the best attack of the data set; None without a blind baseline."""
    metrics = data.metrics
    blind = _best_row(metrics[metrics["method"] == BLIND])
    if blind is None:
        return None
    return BlindCheck(blind, _best_row(metrics[metrics["method"] != BLIND]))


def _blind_warning(dataset: str, check: BlindCheck, link: str = "") -> str:
    best = check.best_attack
    return (
        '<div class="warning" role="alert"><strong>Warning: members and non-members of data set '
        f"{_escape(dataset)} differ in distribution.</strong> The blind baseline, a bag-of-words classifier "
        f"that never looks at the model, reaches AUROC {_escape(_auroc_with_interval(check.blind))}, at or "
        f"above the best attack ({_escape(_variant_label(best, model=True))}: "
        f"{_escape(_auroc_with_interval(best))}). The text alone tells members from non-members as well as "
        "any attack does, so no attack result on this data set measures membership."
        + (f' <a href="#{link}">More in the blind baseline section.</a>' if link else "")
        + "</div>"
    )


def blind_baseline(data: RunData) -> str:
    check = blind_check(data)
    if check is None:
        return (
            "<p>The blind baseline was not run on this data set (or has no AUROC), so nothing here checks that "
            "members and non-members come from the same distribution.</p>"
        )
    best = check.best_attack
    rows = [
        ["blind baseline (bag of words, cross-validated)", _auroc_with_interval(check.blind)],
        [
            f"best attack: {_variant_label(best, model=True)}" if best is not None else "best attack: none run",
            MISSING if best is None else _auroc_with_interval(best),
        ],
    ]
    verdict = (
        _blind_warning(data.dataset or "", check)
        if check.warns
        else "<p>The best attack beats the blind baseline, so at least that result is not explained by the "
        "distribution shift alone; attacks below the blind baseline's AUROC still are not evidence of "
        "membership.</p>"
    )
    return _plain_table(["", "AUROC [95% interval]"], rows) + verdict


def table_5_1(data: RunData) -> str:
    main = _by_key(data.main_rows(), ["budget", "model"])
    if not main:
        return f"<p>No results of {_escape(METHOD)} with selection all.</p>"
    models = data.models
    budgets = [budget for budget in data.budgets if any((budget, model) in main for model in models)]
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
    return _table(head, body) + _coverage_note(data)


def _coverage_note(data: RunData) -> str:
    """Which texts the parameter-change AUROCs cover where some training runs failed: those
    texts have no score for that (model, budget), while every baseline scores them all."""
    texts = data.texts
    if texts.empty or "status" not in texts:
        return ""
    counts = (
        texts.assign(failed=texts["status"] != "ok")
        .groupby(["model", "budget"], sort=False)["failed"]
        .agg(["sum", "size"])
    )
    failed = counts[counts["sum"] > 0]
    if failed.empty:
        return ""
    parts = [
        f"{_escape(model)}, {_escape(budget_heading(budget))}: {int(row['size'] - row['sum'])} of {int(row['size'])} "
        f"texts ({int(row['sum'])} failed)"
        for (model, budget), row in failed.iterrows()
    ]
    return (
        f'<p class="note">Texts covered: every {_escape(METHOD)} AUROC covers the texts whose training finished; '
        f"where some failed: {'; '.join(parts)}. The failed texts are listed under Failed texts; the baselines "
        "score every text, failed or not.</p>"
    )


def _table_5_2_groups(data: RunData) -> list[tuple[str, str, str, list[str]]]:
    """(label, method, selection, budgets): the thesis's selections in its order, then the baselines."""
    metrics = data.metrics
    ours = metrics[metrics["method"] == METHOD]["selection"].unique().tolist()
    known = [selection for selection in SELECTIONS if selection in ours]
    groups = []
    for selection in known + sorted(set(ours) - set(known)):
        present = set(metrics[(metrics["method"] == METHOD) & (metrics["selection"] == selection)]["budget"])
        groups.append((selection, METHOD, selection, [budget for budget in data.budgets if budget in present]))
    for method in _baseline_methods(metrics):
        rows = metrics[metrics["method"] == method]
        for selection in dict.fromkeys(rows["selection"]):
            label = method_label(method) + (f" ({selection})" if selection else "")
            budgets = ordered_budgets(rows[rows["selection"] == selection]["budget"])
            groups.append((label, method, selection, budgets))
    return groups


def table_5_2(data: RunData) -> str:
    if data.metrics.empty:
        return "<p>No results.</p>"
    best = _by_key(_best_over_k(data.metrics), ["method", "selection", "budget", "model"])
    models = data.models
    groups = _table_5_2_groups(data)
    # One row per (group, budget); per row one metrics row (or None) per model.
    rows = [
        (label, method, budget, [best.get((method, selection, budget, model)) for model in models])
        for label, method, selection, budgets in groups
        for budget in budgets
    ]
    means = [_mean(math.nan if row is None else row["auroc"] for row in chosen) for *_, chosen in rows]
    flags = [_best_flags([chosen[index]["auroc"] if chosen[index] is not None else math.nan for *_, chosen in rows])
             for index in range(len(models))]  # fmt: skip
    mean_flags = _best_flags(means)

    head = [[_cell(column, header=True) for column in ["selection / method", "budget", *models, "mean"]]]
    body, uses_k, previous = [], False, None
    for row_index, (label, method, budget, chosen) in enumerate(rows):
        cells = []
        if (label, method) != previous:
            span = sum(1 for other in rows if (other[0], other[1]) == (label, method))
            cells.append(_cell(label, label=True, rowspan=span))
            previous = (label, method)
        cells.append(_cell(budget_heading(budget), label=True))
        for index, row in enumerate(chosen):
            if row is None:
                cells.append(_cell(MISSING))
                continue
            text, note = _auroc_with_interval(row), ""
            if not _is_missing(row["k"]):
                text, note, uses_k = f"{text} (K={_k_label(row['k'])})", K_NOTE, True
            cells.append(_cell(text, bold=flags[index][row_index], note=note))
        cells.append(_cell(_auroc(means[row_index]), bold=mean_flags[row_index]))
        body.append(cells)
    footnote = (
        f'<p class="note">{_escape(K_NOTE)} The K with the best AUROC on these same texts (for top-K%: the '
        "percentage of entries or layers kept; for Min-K%: of tokens). Choosing K on the evaluation set is "
        "optimistic: an attacker without the labels could not make this choice, so these cells overstate "
        'what the method achieves. The section "Best top-K%" sets a cross-validated K beside it.</p>'
        if uses_k
        else ""
    )
    return _table(head, body) + footnote + _coverage_note(data)


def _thesis_models(data: RunData) -> dict[str, str]:
    """Thesis column name -> this run's model slug, for the models the run shares with the thesis."""
    configured = data.config.get("models")
    if not isinstance(configured, dict):
        return {}
    by_id = {hub_id.lower(): name for hub_id, name in THESIS_MODELS.items()}
    found = {}
    for slug in data.models:
        spec = configured.get(slug)
        path = str(spec.get("path", "")).strip().rstrip("/").lower() if isinstance(spec, dict) else ""
        if path in by_id and by_id[path] not in found:
            found[by_id[path]] = slug
    return {name: found[name] for name in THESIS_MODELS.values() if name in found}


def _thesis_dataset_matches(data: RunData) -> bool:
    datasets = data.config.get("datasets")
    spec = datasets.get(data.dataset) if isinstance(datasets, dict) else None
    if not isinstance(spec, dict):
        return False
    return (
        str(spec.get("hf", "")).lower() == THESIS_DATASET["hf"].lower()
        and str(spec.get("split", "")) == THESIS_DATASET["split"]
    )


def _thesis_cell(data: RunData, thesis: ThesisRow, model: str) -> pd.Series | None:
    metrics = data.metrics
    rows = metrics[
        (metrics["model"] == model)
        & (metrics["method"] == thesis.method)
        & (metrics["selection"] == thesis.selection)
        & (metrics["budget"] == thesis.budget)
    ]
    if thesis.k is None:
        rows = rows[rows["k"].isna()]
    elif thesis.k != "best" and (rows["k"] == thesis.k).any():
        rows = rows[rows["k"] == thesis.k]
    return _best_row(rows)


def thesis_comparison(data: RunData) -> str:
    models = _thesis_models(data)
    if not _thesis_dataset_matches(data):
        return (
            f"<p>No comparison: data set {_escape(data.dataset)} is not the thesis's (Hugging Face "
            f"{_escape(THESIS_DATASET['hf'])}, split {_escape(THESIS_DATASET['split'])}), so its published "
            "numbers are not comparable with these.</p>"
        )
    if not models:
        return (
            "<p>No comparison: none of this run's models is one of the thesis's ("
            + _escape(", ".join(THESIS_MODELS))
            + ") by its configured path.</p>"
        )
    names = list(THESIS_MODELS.values())
    all_four = len(models) == len(names)
    head = [
        [_cell("row", header=True, rowspan=2)]
        + [_cell(f"{name} ({slug})", header=True, colspan=2) for name, slug in models.items()]
        + ([_cell("mean", header=True, colspan=2)] if all_four else []),
        [_cell(text, header=True) for _ in range(len(models) + all_four) for text in ("thesis", "this run")],
    ]
    body, uses_k = [], False
    for thesis in THESIS_RESULTS:
        cells = [_cell(thesis.label, label=True)]
        run_aurocs = []
        for name, slug in models.items():
            row = _thesis_cell(data, thesis, slug)
            run_aurocs.append(math.nan if row is None else row["auroc"])
            text, note = (MISSING, "") if row is None else (_auroc_with_interval(row), "")
            if row is not None and not _is_missing(row["k"]):
                chosen = thesis.k == "best" or float(row["k"]) != float(thesis.k)
                text, note = f"{text} (K={_k_label(row['k'])})", K_NOTE if chosen else ""
                uses_k = uses_k or chosen
            cells += [_cell(f"{thesis.published[names.index(name)]:.2f}"), _cell(text, note=note)]
        if all_four:
            cells += [_cell(f"{thesis.mean:.3f}"), _cell(_number(_mean(run_aurocs), ".3f"))]
        body.append(cells)
    missing = [name for name in names if name not in models]
    notes = [
        "The thesis's top-K% keeps the parameters whose change is largest (here topk-elements) with the best "
        "K from 1 to 50 on the evaluation set, and its Min-K% Prob uses its paper's K = 20%; this run's cells "
        "do the same where it ran those K."
    ]
    if uses_k:
        notes.append(f"{K_NOTE} K chosen on the evaluation set, as in the thesis: optimistic.")
    if missing:
        notes.append(f"Not in this run: {', '.join(missing)}; the mean column needs all four models.")
    return _table(head, body) + "".join(f'<p class="note">{_escape(note)}</p>' for note in notes)


# ROC curves ------------------------------------------------------------------------------


def _scores_of(data: RunData, row: pd.Series) -> pd.DataFrame:
    scores = data.scores
    same_variant = (
        (scores["method"] == row["method"])
        & (scores["selection"] == row["selection"])
        & (scores["budget"] == row["budget"])
        & (scores["k"].isna() if _is_missing(row["k"]) else scores["k"] == row["k"])
    )
    chosen = scores[same_variant & (scores["model"] == row["model"])]
    if chosen.empty and row["method"] == BLIND:
        # The blind baseline never looks at a model: any model's copy of its scores will do.
        first = scores[same_variant]["model"].head(1)
        chosen = scores[same_variant & scores["model"].isin(first)]
    return chosen


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


def _roc_rows(data: RunData, model: str) -> list[tuple[pd.Series, str, dict]]:
    """(metrics row, curve name, line style): the best selection per budget, then the baselines."""
    metrics = data.metrics[(data.metrics["model"] == model) & data.metrics["auroc"].notna()]
    curves = []
    for index, budget in enumerate(data.budgets):
        row = _best_row(metrics[(metrics["method"] == METHOD) & (metrics["budget"] == budget)])
        if row is not None:
            colour = BUDGET_COLOURS[index % len(BUDGET_COLOURS)]
            curves.append((row, _variant_label(row), {"color": colour}))
    blind = data.metrics[data.metrics["method"] == BLIND]
    for method in ROC_BASELINES:
        candidates = blind if method == BLIND and not (metrics["method"] == BLIND).any() else metrics
        row = _best_row(candidates[candidates["method"] == method])
        if row is not None:
            style = {"color": BASELINE_COLOURS[method], "dash": "dot" if method == BLIND else "dash"}
            curves.append((row, _variant_label(row), style))
    return curves


def _tpr_cell(row: pd.Series, tpr: str, fpr: str) -> str:
    if _is_missing(row[tpr]):
        return MISSING
    return f"{_number(row[tpr], '.2f')} (FPR {_number(row[fpr], '.3f')})"


def _roc_figure(data: RunData, model: str, index: int) -> tuple[str, str]:
    """One figure with the linear and the log-log ROC plot side by side, and the TPR table."""
    curves = []
    for row, name, style in _roc_rows(data, model):
        scores = _scores_of(data, row)
        points = roc_points(scores["label"].to_numpy(int), scores["score"].to_numpy(float))
        if not points.empty:
            n = max(int((scores["label"] == 0).sum()), int((scores["label"] == 1).sum()))
            curves.append((row, name, style, thin_roc(points), n))
    if not curves:
        return f"<p>No scores for {_escape(model)}.</p>", ""
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
                    name=_escape(f"{name} ({_auroc(row['auroc'])})"),
                    legendgroup=_escape(name),
                    showlegend=not axes,
                    line=style,
                    **axes,
                )
            )
    linear = {"range": [0, 1], "constrain": "domain"}
    log = {"type": "log", "range": [math.log10(floor), 0], "constrain": "domain"}
    fpr, tpr = {"title": {"text": "false positive rate"}}, {"title": {"text": "true positive rate"}}
    panels = _panels(
        ["linear axes", "log-log axes"],
        0.1,
        [{**fpr, **linear}, {**fpr, **log}],
        [{**tpr, **linear, "scaleanchor": "x"}, {**tpr, **log, "scaleanchor": "x2"}],
    )
    figure = _layout(traces, f"{model}: ROC curves", 480, legend={"font": {"size": 11}}, **panels)
    plot = _plot(data, figure, f"roc-{data.anchor}-m{index}")

    table = ""
    if all(column in data.metrics.columns for column in ("tpr_at_1fpr", "fpr_at_1fpr", "tpr_at_5fpr", "fpr_at_5fpr")):
        rows = [
            [
                name,
                _auroc_with_interval(row),
                _tpr_cell(row, "tpr_at_1fpr", "fpr_at_1fpr"),
                _tpr_cell(row, "tpr_at_5fpr", "fpr_at_5fpr"),
            ]
            for row, name, *_ in curves
        ]
        table = _plain_table(
            ["curve", "AUROC [95% interval]", "TPR at 1% FPR (FPR reached)", "TPR at 5% FPR (FPR reached)"], rows
        )
    return plot, table


def roc_curves(data: RunData) -> str:
    parts = []
    for index, model in enumerate(data.models):
        plot, table = _roc_figure(data, model, index)
        parts.append(plot + table)
    n_nonmembers = int(data.texts.drop_duplicates("text_id")["label"].eq(0).sum())
    note = (
        f'<p class="note">With {n_nonmembers} non-members the FPR moves in steps of {1 / n_nonmembers:.3g}; '
        "the TPR is read at the largest FPR that does not exceed 1% or 5%.</p>"
        if n_nonmembers
        else ""
    )
    return "".join(parts) + note


# AUROC against budget ----------------------------------------------------------------------


def _correlation_row(data: RunData, model: str) -> pd.Series | None:
    correlation = data.correlation
    rows = correlation[
        (correlation["model"] == model)
        & (correlation["method"] == METHOD)
        & (correlation["selection"] == "all")
        & correlation["k"].isna()
    ]
    return None if rows.empty else rows.iloc[0]


def _budget_trace(rows: list[pd.Series | None], positions: list[float], name: str, colour: str) -> go.Scatter:
    present = [(position, row) for position, row in zip(positions, rows) if row is not None]
    auroc = np.array([row["auroc"] for _, row in present], dtype=float)
    low = np.array([row["auroc_lo"] for _, row in present], dtype=float)
    high = np.array([row["auroc_hi"] for _, row in present], dtype=float)
    return go.Scatter(
        x=[position for position, _ in present],
        y=auroc,
        mode="lines+markers",
        name=_escape(name),
        line={"color": colour},
        error_y={"type": "data", "array": np.nan_to_num(high - auroc), "arrayminus": np.nan_to_num(auroc - low)},
        text=[_escape(f"{_variant_label(row)}: {_auroc_with_interval(row)}") for _, row in present],
        hovertemplate="%{text}<extra></extra>",
    )


def _budget_figure(data: RunData, model: str, index: int) -> str:
    metrics = data.metrics[(data.metrics["model"] == model) & data.metrics["auroc"].notna()]
    ours = metrics[metrics["method"] == METHOD]
    budgets = [budget for budget in data.budgets if (ours["budget"] == budget).any()]
    if not budgets:
        return f"<p>No results for {_escape(model)}.</p>"
    main = _by_key(ours[ours["selection"] == "all"], ["budget"])
    all_rows = [main.get((budget,)) for budget in budgets]
    best_rows = [_best_row(ours[ours["budget"] == budget]) for budget in budgets]
    positions = list(range(len(budgets)))
    traces = [
        _budget_trace(all_rows, [p - 0.06 for p in positions], f"{METHOD}, all layers", BUDGET_COLOURS[0]),
        _budget_trace(best_rows, [p + 0.06 for p in positions], f"{METHOD}, best selection", BUDGET_COLOURS[1]),
    ]
    loss = _best_row(metrics[metrics["method"] == "loss"])
    if loss is not None:
        traces.append(
            go.Scatter(
                x=[-0.3, len(budgets) - 0.7],
                y=[loss["auroc"]] * 2,
                mode="lines",
                name=_escape(f"loss baseline (no budget): {_auroc(loss['auroc'])}"),
                line={"dash": "dash", "color": BASELINE_COLOURS["loss"]},
            )
        )
    correlation = _correlation_row(data, model)
    title = model
    if correlation is not None:
        title += f": r = {_number(correlation['r'], '.2f')}, p = {_number(correlation['p'], '.2g')}"
    figure = _layout(
        traces,
        title,
        400,
        xaxis={
            "title": "epoch budget",
            "tickvals": positions,
            "ticktext": [_escape(budget_heading(budget)) for budget in budgets],
            "range": [-0.5, len(budgets) - 0.5],
        },
        yaxis={"title": "AUROC"},
        shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0.5, "y1": 0.5,
                 "line": {"color": "grey", "dash": "dot", "width": 1}}],
    )  # fmt: skip
    return _plot(data, figure, f"budget-{data.anchor}-m{index}")


def budget_curves(data: RunData) -> str:
    figures = _figures(_budget_figure(data, model, index) for index, model in enumerate(data.models))
    rows = []
    for model in data.models:
        row = _correlation_row(data, model)
        if row is not None:
            rows.append([model, _number(row["r"], ".2f"), _number(row["p"], ".2g"), _integer(row["n"])])
    # The thesis's form (5.2.4): the AUROC averaged over the models first, one point per budget.
    mean = _correlation_row(data, MEAN_OVER_MODELS)
    if mean is not None:
        rows.append(
            [
                f"{MEAN_OVER_MODELS} (thesis 5.2.4: r = 0.954, p = 0.046)",
                _number(mean["r"], ".2f"),
                _number(mean["p"], ".2g"),
                _integer(mean["n"]),
            ]
        )
    table = (
        f"<h4>Pearson correlation of epoch budget and AUROC ({_escape(METHOD)}, all layers)</h4>"
        + _plain_table(["model", "r", "p", "budgets"], rows)
        if rows
        else "<p>No correlation results.</p>"
    )
    return figures + table


# Members vs non-members ----------------------------------------------------------------------


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


def _change_figure(data: RunData, model: str, index: int) -> str:
    """Box plots of members and non-members, one panel per budget with its own scale."""
    change = data.change[data.change["model"] == model]
    budgets = [budget for budget in data.budgets if (change["budget"] == budget).any()]
    if not budgets:
        return f"<p>No parameter-change table for {_escape(model)}.</p>"
    measures = list(CHANGE_MEASURES)
    traces, owners = [], []  # owners: the measure of each trace, for the buttons
    for measure_index, measure in enumerate(measures):
        for column, budget in enumerate(budgets, start=1):
            for label in (1, 0):
                values = change[(change["budget"] == budget) & (change["label"] == label)][measure]
                stats = box_stats(values.to_numpy(float))
                if stats is None:
                    continue
                suffix = "" if column == 1 else str(column)
                traces.append(
                    go.Box(
                        x=[CLASS_NAMES[label]],
                        xaxis=f"x{suffix}",
                        yaxis=f"y{suffix}",
                        **{key: [stats[key]] for key in ("q1", "median", "q3", "lowerfence", "upperfence", "mean")},
                        name=f"{CLASS_NAMES[label]}",
                        legendgroup=CLASS_NAMES[label],
                        showlegend=column == 1 and measure_index == 0,
                        marker={"color": MEMBER_COLOURS[label]},
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
                {"title.text": _escape(f"{model}: {CHANGE_MEASURES[measure]}")},
            ],
        }
        for measure_index, measure in enumerate(measures)
    ]
    panels = _panels(
        [budget_heading(budget) for budget in budgets],
        min(0.08, 0.4 / len(budgets)),
        [{"showticklabels": False}] * len(budgets),
        [{}] * len(budgets),
    )
    figure = _layout(
        traces,
        f"{model}: {CHANGE_MEASURES[measures[0]]}",
        440,
        **panels,
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "x": 1, "y": 1.2,
                      "xanchor": "right", "yanchor": "bottom", "showactive": True}],
        margin={"t": 120, "b": 30},
        title={"y": 0.97, "font": {"size": 14}},
    )  # fmt: skip
    return _plot(data, figure, f"change-{data.anchor}-m{index}")


def member_change(data: RunData) -> str:
    figures = (
        "".join(_change_figure(data, model, index) for index, model in enumerate(data.models))
        if not data.change.empty
        else "<p>No per-text parameter-change table was given.</p>"
    )
    ttest = _in_run_order(data, data.ttest)
    rows = [
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
    table = (
        _plain_table(
            ["model", "budget", "members", "non-members", "mean change, members", "mean change, non-members", "t", "p"],
            rows,
            label_columns=2,
        )  # fmt: skip
        if rows
        else "<p>No t-test results.</p>"
    )
    return figures + "<h4>Welch t-test of the mean normalised parameter change</h4>" + table


# Per-layer heat map ------------------------------------------------------------------------


def _colour_half_width(layers: pd.DataFrame) -> float:
    """One colour range for every heat map of a data set, centred on 0.5, at least +-0.05."""
    deviation = (layers["auroc"].astype(float) - 0.5).abs().max()
    return max(0.05, math.ceil((0.0 if _is_missing(deviation) else deviation) * 20) / 20)


def _layer_figure(data: RunData, layers: pd.DataFrame, title: str, div_id: str, half_width: float) -> str:
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
        names = "<br>".join(f"{_escape(name)}: {_number(value, '.3f')}" for name, value in zip(cell["layer"], aurocs))
        count = f"{len(cell)} layer{'s' if len(cell) > 1 else ''}"
        text[row][col] = f"{count}, max {_number(aurocs.max(), '.3f')}<br>{names}"
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=[_escape(group) for group in groups],
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
    figure = _layout(
        figure,
        title,
        150 + 45 * len(groups),
        xaxis={"title": "block", "type": "category"},
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return _plot(data, figure, div_id)


def layer_heatmaps(data: RunData) -> str:
    if data.layers.empty:
        return "<p>No per-layer AUROC table was given.</p>"
    half_width = _colour_half_width(data.layers)
    parts = []
    for model_index, model in enumerate(data.models):
        for budget_index, budget in enumerate(data.budgets):
            layers = data.layers[(data.layers["model"] == model) & (data.layers["budget"] == budget)]
            if not layers.empty:
                div_id = f"layers-{data.anchor}-m{model_index}-b{budget_index}"
                parts.append(_layer_figure(data, layers, f"{model}, {budget_heading(budget)}", div_id, half_width))
    return _figures(parts)


# Training ----------------------------------------------------------------------------------


def _loss_matrix(losses: pd.Series) -> np.ndarray:
    """Per-text loss lists as a texts x epochs matrix, NaN after a run's last epoch."""
    lists = [np.asarray([] if _is_missing(value) else value, dtype=float).ravel() for value in losses]
    width = max((values.size for values in lists), default=0)
    matrix = np.full((len(lists), width), np.nan)
    for row, values in enumerate(lists):
        matrix[row, : values.size] = values
    return matrix


def _loss_budget(data: RunData) -> str | None:
    """The largest fixed budget with recorded losses."""
    if "losses" not in data.texts.columns:
        return None
    fixed = [budget for budget in data.budgets if budget_sort_key(budget)[0] == 0]
    for budget in reversed(fixed):
        losses = data.texts[data.texts["budget"] == budget]["losses"]
        if any(not _is_missing(value) and len(value) for value in losses):
            return budget
    return None


def _loss_figure(data: RunData, model: str, index: int, budget: str) -> str:
    texts = data.texts[(data.texts["model"] == model) & (data.texts["budget"] == budget)]
    traces = []
    for label in (1, 0):
        matrix = _loss_matrix(texts[texts["label"] == label]["losses"])
        counts = np.isfinite(matrix).sum(axis=0)
        epochs = np.flatnonzero(counts) if matrix.size else np.array([], dtype=int)
        if not epochs.size:
            continue
        with np.errstate(all="ignore"):
            q1, median, q3 = np.nanpercentile(matrix[:, epochs], [25, 50, 75], axis=0)
        x = epochs + 1
        colour = MEMBER_COLOURS[label]
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
                legendgroup=CLASS_NAMES[label],
            )
        )
        traces.append(
            go.Scatter(
                x=x,
                y=median,
                mode="lines",
                name=f"{CLASS_NAMES[label]}, median",
                line={"color": colour},
                legendgroup=CLASS_NAMES[label],
                customdata=counts[epochs],
                hovertemplate="epoch %{x}: median loss %{y:.4f} over %{customdata} texts<extra></extra>",
            )
        )
    if not traces:
        return f"<p>No losses for {_escape(model)}.</p>"
    figure = _layout(
        traces,
        f"{model}: training loss, {budget_heading(budget)}",
        400,
        xaxis={"title": "epoch"},
        yaxis={"title": "training loss on the text"},
    )
    return _plot(data, figure, f"loss-{data.anchor}-m{index}")


def _stopping_figure(data: RunData, model: str, index: int) -> tuple[str, list | None]:
    texts = data.texts[(data.texts["model"] == model) & (data.texts["budget"] == "es")]
    epochs = pd.to_numeric(texts["epochs_run"], errors="coerce")
    if epochs.notna().sum() == 0:
        return "", None
    traces, row = [], [model]
    for label in (1, 0):
        values = epochs[(texts["label"] == label).to_numpy()].dropna().astype(int)
        counts = values.value_counts().sort_index()
        median = values.median() if len(values) else math.nan
        row += [len(values), _number(median, ".1f"), _number(values.quantile(0.25) if len(values) else math.nan, ".1f")
                + "–" + _number(values.quantile(0.75) if len(values) else math.nan, ".1f")]  # fmt: skip
        traces.append(
            go.Bar(
                x=counts.index.to_numpy(),
                y=counts.to_numpy(),
                name=f"{CLASS_NAMES[label]} (median {_number(median, '.1f')})",
                marker={"color": MEMBER_COLOURS[label]},
            )
        )
    figure = _layout(
        traces,
        f"{model}: epochs run under early stopping",
        340,
        barmode="group",
        xaxis={"title": "epochs run"},
        yaxis={"title": "texts"},
    )
    return _plot(data, figure, f"es-{data.anchor}-m{index}"), row


def training(data: RunData) -> str:
    budget = _loss_budget(data)
    parts = []
    if budget is None:
        parts.append("<p>No per-epoch training losses were recorded.</p>")
    else:
        parts.append(_figures(_loss_figure(data, model, index, budget) for index, model in enumerate(data.models)))
    if "epochs_run" in data.texts.columns and (data.texts["budget"] == "es").any():
        stopping = [_stopping_figure(data, model, index) for index, model in enumerate(data.models)]
        rows = [row for _, row in stopping if row is not None]
        if rows:
            parts.append("<h4>Early stopping: epochs run</h4>")
            parts.append(_figures(figure for figure, _ in stopping if figure))
            parts.append(
                _plain_table(
                    [
                        "model",
                        "members",
                        "median epochs, members",
                        "IQR, members",
                        "non-members",
                        "median epochs, non-members",
                        "IQR, non-members",
                    ],
                    rows,
                )  # fmt: skip
            )
    else:
        parts.append("<p>No early-stopping runs.</p>")
    return "".join(parts)


# Top-K ------------------------------------------------------------------------------------


def topk_selection(data: RunData) -> str:
    table = data.topk_cv
    if table.empty:
        return "<p>No cross-validated top-K results were given.</p>"
    order = {selection: index for index, selection in enumerate(K_SELECTIONS)}
    table = _in_run_order(data, table.assign(_order=table["selection"].map(order).fillna(len(order))), "_order")
    rows = [
        [
            row["model"],
            budget_heading(row["budget"]),
            row["selection"],
            _number(row["k_eval"], "g"),
            _auroc(row["auroc_eval"]),
            str(row["k_folds"]),
            _interval(row["auroc_cv"], row["auroc_cv_lo"], row["auroc_cv_hi"]),
            _number(float(row["auroc_eval"]) - float(row["auroc_cv"]), "+.2f")
            if not (_is_missing(row["auroc_eval"]) or _is_missing(row["auroc_cv"]))
            else MISSING,
        ]
        for _, row in table.iterrows()
    ]
    head = [
        "model", "budget", "selection", f"K on evaluation set{K_NOTE}", f"AUROC at that K{K_NOTE}",
        "K per CV fold", "cross-validated AUROC [95% interval]", "optimism",
    ]  # fmt: skip
    return _plain_table(head, rows, label_columns=3) + (
        f'<p class="note">{_escape(K_NOTE)} Optimistic: K chosen by the AUROC on the very texts it is reported '
        "on. The optimism column is that AUROC minus the cross-validated one.</p>"
    )


# Failures and configuration ---------------------------------------------------------------


def failed_texts(data: RunData) -> str:
    failed = data.texts[data.texts["status"] == "failed"]
    if failed.empty:
        return "<p>none</p>"
    failed = _in_run_order(data, failed, "text_id")
    parts = []
    if len(failed) > FAILED_ROWS:
        counts = failed.assign(failure=failed["failure"].fillna("").astype(str)).groupby(
            ["model", "budget", "failure"], sort=False
        )
        parts.append(
            _plain_table(
                ["model", "budget", "failure", "texts"],
                [[model, budget_heading(budget), failure, len(group)] for (model, budget, failure), group in counts],
                label_columns=3,
            )
        )
        parts.append(f'<p class="note">The first {FAILED_ROWS} of {len(failed)} failed training runs:</p>')
    rows = [
        [row["model"], budget_heading(row["budget"]), row["text_id"], row["failure"], _integer(row["failed_epoch"])]
        for _, row in failed.head(FAILED_ROWS).iterrows()
    ]
    parts.append(_plain_table(["model", "budget", "text_id", "failure", "failed epoch"], rows, label_columns=4))
    return "".join(parts)


def failed_texts_and_skipped_steps(data: RunData) -> str:
    return failed_texts(data) + skipped_steps(data)


def skipped_steps(data: RunData) -> str:
    """Texts whose fp16 loss scaler skipped steps (an overflow: that step did not train)."""
    if "skipped_steps" not in data.texts:
        return ""
    skipped = data.texts[pd.to_numeric(data.texts["skipped_steps"], errors="coerce").fillna(0) > 0]
    if skipped.empty:
        return ""
    skipped = _in_run_order(data, skipped, "text_id")
    rows = []
    for _, row in skipped.head(FAILED_ROWS).iterrows():
        steps = row.get("epochs_run", np.nan) * row.get("n_chunks", np.nan)
        share = f"{row['skipped_steps'] / steps:.0%}" if steps and np.isfinite(steps) else ""
        rows.append(
            [
                row["model"],
                budget_heading(row["budget"]),
                row["text_id"],
                _integer(row["skipped_steps"]),
                _integer(steps),
                share,
            ]
        )
    more = f" (the first {FAILED_ROWS} of {len(skipped)})" if len(skipped) > FAILED_ROWS else ""
    return (
        f'<p class="note">Steps skipped by the fp16 loss scaler: {len(skipped)} texts{more}. A skipped step '
        "did not train: with a budget of 5 epochs on a one-chunk text, one skip is 20% of its training.</p>"
        + _plain_table(["model", "budget", "text_id", "skipped steps", "steps", "share"], rows, label_columns=3)
    )


def configuration(data: RunData) -> str:
    config = json.dumps(data.meta.get("config", {}), indent=2, default=str)
    versions = _plain_table(["package", "version"], sorted(data.meta.get("versions", {}).items()))
    return (
        f"<details><summary>Configuration</summary><pre>{_escape(config)}</pre></details>"
        f"<details open><summary>Versions</summary>{versions}</details>"
    )


SECTIONS = (
    Section(
        "summary",
        "Run summary",
        "What was run: for each data set the number of member and non-member texts, the models that were "
        "continually pre-trained on every text, the epoch budgets, the attacks evaluated, and how many of "
        "the training runs (one per text, model and budget) finished or failed. A failed run leaves its text "
        "without a score for that model and budget, so the results below rest on the runs that finished. "
        "Below, the workflow's jobs and their compute from the per-job benchmark records: wall time, peak "
        "memory and GPU hours (wall time times GPUs requested), per rule, largest first.",
        run_summary,
        per_dataset=False,
    ),
    Section(
        "blind",
        "Blind baseline: does the data set measure membership?",
        "A bag-of-words classifier trained on the texts alone, never looking at the model, against the best "
        "attack of the data set (any method, model, budget and selection). If the text alone separates "
        "members from non-members as well as the best attack, the two sets differ in distribution (for "
        "WikiMIA: in time), and an attack's AUROC may reflect that shift rather than membership. A warning "
        "appears here and at the top of the page when the blind AUROC is at or above the best attack's.",
        blind_baseline,
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
        "Table 5.2 form: AUROC by layer selection, with the baselines",
        "AUROC of the score aggregated over each selection of layers, in the form of the thesis's table 5.2: "
        "one row per selection and epoch budget, one column per model and the mean over models, then the "
        "baseline attacks, which score the target model as it is and so have no budget (one value per "
        "model). A cell reads AUROC [95% interval]; for the top-K and Min-K selections it shows the AUROC of "
        "the best K and that K. The best value of each column, over all rows, is bold.",
        table_5_2,
    ),
    Section(
        "thesis",
        "Comparison with the thesis's published numbers",
        "The thesis's AUROCs on WikiMIA's 32-word split (its tables 5.1 and 5.2) beside this run's, for the "
        "models this run shares with it (matched on the configured Hugging Face id) and only on the same "
        "data set. A this-run cell reads AUROC [95% interval]; the thesis printed no intervals, so a "
        "difference smaller than this run's interval is no evidence that the two disagree.",
        thesis_comparison,
    ),
    Section(
        "roc",
        "ROC curves",
        "Two plots per model, linear and log-log axes: the ROC curve of the best parameter-change selection "
        "at each epoch budget (solid) and of the main baselines (dashed: loss, Min-K% and Min-K%++ at their "
        "best K, SaMIA*zlib; dotted: the blind baseline). A curve shows the share of members detected (true "
        "positive rate) against the share of non-members wrongly flagged (false positive rate) as the "
        "threshold is lowered; the diagonal is chance. The log-log plot shows the low false positive rates "
        "that matter for an attack; the table below reads the TPR at 1% and 5% FPR.",
        roc_curves,
    ),
    Section(
        "budget",
        "AUROC against epoch budget",
        "Per model, the AUROC of the parameter-change score over all layers and of the best selection at "
        "each epoch budget, with 95% bootstrap intervals as error bars, and the loss baseline (which has no "
        "budget) as a dashed line. The thesis found the AUROC rising with the number of epochs (its Pearson "
        "r = 0.954, p = 0.046 over 5 to 30 epochs); the title of each plot and the table give this run's r "
        "and p over the numeric budgets (early stopping has no epoch count and is left out).",
        budget_curves,
    ),
    Section(
        "change",
        "Members vs non-members: how much the parameters change",
        "The thesis's hypothesis: a text the model has already learned (a member) moves its weights less. "
        "Per model, box plots of the parameter change of members and non-members at each epoch budget "
        "(box: quartiles; line: median; whiskers: the last values within 1.5 times the interquartile range; "
        "outliers not drawn). The buttons switch between the raw global L2 norm of the change, the mean raw "
        "layer change, and the mean min-max normalised layer change. The table gives Welch's t-test of the "
        "last of these (the thesis's 5.1.4): t is negative when members change less.",
        member_change,
    ),
    Section(
        "layers",
        "Where membership shows in the model: AUROC per layer",
        "One heat map per model and epoch budget: columns are transformer blocks (layers outside any block, "
        f"such as the embeddings, the final norm and the output head, in the column {NO_BLOCK}), rows are "
        "module groups, and the colour is the AUROC of the normalised change of that layer alone, oriented "
        "so that higher means members change less. Where a block has several layers of a group (e.g. q, k, "
        "v, o) the cell shows their mean; hover for each layer's name and AUROC and the maximum. Red is "
        "above chance (0.5, white), blue below; every map of a data set shares one colour range.",
        layer_heatmaps,
    ),
    Section(
        "training",
        "Training on each text: loss curves and early stopping",
        "Per model, the training loss on the text over the epochs of the largest fixed budget: the median of "
        "members and of non-members, with a band from the first to the third quartile. Members start lower "
        "if the model has learned them. Below, for early stopping, how many epochs each text ran before its "
        "loss stopped improving, members against non-members.",
        training,
    ),
    Section(
        "topk",
        "Best top-K%: chosen on the evaluation set vs cross-validated",
        "The thesis reports the top-K% selections at the K that scores best on the evaluation texts "
        "themselves, which no attacker without the labels could choose, so that AUROC is optimistic. Beside "
        "it, K chosen by 5-fold cross-validation: each fold's K is the best on the other four folds and "
        "scores the held-out texts; the table gives each fold's K and the mean of the five held-out "
        "AUROCs (each fold's own, since scores made with different K are not on one scale), with a "
        "bootstrap interval that repeats the whole selection in every replicate. That is the number to quote.",
        topk_selection,
    ),
    Section(
        "failed",
        "Failed texts",
        "Training runs that did not finish, with the failure and the epoch in which it happened. These texts "
        "have no score for that model and budget and are missing from the tables above. Long lists are "
        "cut, with a count per failure first. With fp16, the texts whose loss scaler skipped steps follow.",
        failed_texts_and_skipped_steps,
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


def _warnings(data: RunData) -> str:
    boxes = []
    for index, dataset in enumerate(data.datasets):
        subset = data.for_dataset(dataset, index)
        check = blind_check(subset)
        if check is not None and check.warns:
            boxes.append(_blind_warning(dataset, check, link=f"blind-{subset.anchor}"))
    return f'<div id="warnings">{"".join(boxes)}</div>' if boxes else ""


def _run_data(
    metrics: pd.DataFrame,
    scores: pd.DataFrame,
    ttest: pd.DataFrame,
    correlation: pd.DataFrame,
    texts: pd.DataFrame,
    meta: dict,
    layers: pd.DataFrame | None,
    change: pd.DataFrame | None,
    topk_cv: pd.DataFrame | None,
    benchmarks: pd.DataFrame | None,
) -> RunData:
    metrics = _prepare(metrics, "metrics")
    key = ["dataset", "model", "budget", "method", "selection", "k"]
    duplicated = metrics[metrics.duplicated(key, keep=False)]
    if not duplicated.empty:
        raise ValueError(f"metrics hold more than one row for {duplicated[key].drop_duplicates().to_dict('records')}")
    return RunData(
        metrics=metrics,
        scores=_prepare(scores, "scores"),
        ttest=_prepare(ttest, "ttest"),
        correlation=_prepare(correlation, "correlation"),
        texts=_prepare(texts, "texts"),
        layers=_prepare(layers, "layers"),
        change=_prepare(change, "change"),
        topk_cv=_prepare(topk_cv, "topk_cv"),
        benchmarks=_prepare(benchmarks, "benchmarks"),
        meta=meta,
    )


def render(
    metrics: pd.DataFrame,
    scores: pd.DataFrame,
    ttest: pd.DataFrame,
    correlation: pd.DataFrame,
    texts: pd.DataFrame,
    meta: dict,
    *,
    layers: pd.DataFrame | None = None,
    change: pd.DataFrame | None = None,
    topk_cv: pd.DataFrame | None = None,
    benchmarks: pd.DataFrame | None = None,
) -> str:
    """The whole report page as one HTML document.

    The keyword tables are optional: a section whose table is missing says so.
    """
    data = _run_data(metrics, scores, ttest, correlation, texts, meta, layers, change, topk_cv, benchmarks)
    nav = "".join(f'<li><a href="#{section.id}">{_escape(section.heading)}</a></li>' for section in SECTIONS)
    return PAGE.format(
        title=_escape(meta.get("title", "Parameter-change membership inference")),
        css=CSS,
        plotly_js=get_plotlyjs(),
        generated=_escape(meta.get("generated", "")),
        nav=nav,
        warnings=_warnings(data),
        sections="\n".join(_section(section, data) for section in SECTIONS),
    )


def figures(
    metrics: pd.DataFrame,
    scores: pd.DataFrame,
    ttest: pd.DataFrame,
    correlation: pd.DataFrame,
    texts: pd.DataFrame,
    meta: dict,
    *,
    layers: pd.DataFrame | None = None,
    change: pd.DataFrame | None = None,
    topk_cv: pd.DataFrame | None = None,
    benchmarks: pd.DataFrame | None = None,
    include_plotlyjs: bool | str = True,
) -> dict[str, str]:
    """Every figure of the page as a standalone HTML document, keyed by its div id (file-name safe).

    ``include_plotlyjs`` is passed to plotly: True embeds plotly.js (about 4.8 MB) in every
    document, so that each opens alone without network; "directory" refers to a
    plotly.min.js beside the files instead, which the caller then writes once.
    """
    data = replace(
        _run_data(metrics, scores, ttest, correlation, texts, meta, layers, change, topk_cv, benchmarks), sink=[]
    )
    for section in SECTIONS:
        _section(section, data)
    several = len(data.datasets) > 1
    documents = {}
    for div_id, dataset, figure in data.sink:
        if several and dataset is not None:
            figure = go.Figure(figure).update_layout(title_text=f"{_escape(dataset)}: {figure.layout.title.text}")
        documents[div_id] = figure.to_html(
            full_html=True, include_plotlyjs=include_plotlyjs, div_id=div_id, config=PLOT_CONFIG
        )
    return documents


def write(path: str | os.PathLike, html: str) -> None:
    """Write the page so that it appears complete or not at all."""
    with atomic_file(path) as partial:
        partial.write_text(html, encoding="utf-8")
