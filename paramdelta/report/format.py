"""How the report writes its values, and which metrics rows it picks: plain text only.

Nothing here makes HTML; the templates escape what they are given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from paramdelta.config import is_supervised
from paramdelta.features import METHOD, SELECTIONS, is_param_delta

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
CLASS_NAMES = {1: "members", 0: "non-members"}


# Budgets and methods.


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


def variant_label(row: pd.Series, *, budget: bool = True, model: bool = False) -> str:
    """A metrics row as words: the method or selection, its K, its budget and model."""
    if row["method"] == METHOD:
        text = f"{METHOD} {row['selection']}"
    else:
        text = method_label(row["method"]) + (f" ({row['selection']})" if row["selection"] else "")
    if not is_missing(row["k"]):
        text += f" K={k_label(row['k'])}"
    if budget and row["budget"] != NO_BUDGET:
        text += f", {budget_heading(row['budget'])}"
    if model and row["method"] != BLIND:
        text += f", {row['model']}"
    return text


# Numbers.


def is_missing(value) -> bool:
    return value is None or (not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value)))


def number(value, spec: str) -> str:
    return MISSING if is_missing(value) else format(float(value), spec)


def auroc(value) -> str:
    return number(value, f".{AUROC_DIGITS}f")


def interval(value, low, high) -> str:
    if is_missing(low) or is_missing(high):
        return auroc(value)
    return f"{auroc(value)} [{auroc(low)}, {auroc(high)}]"


def auroc_with_interval(row: pd.Series) -> str:
    return interval(row["auroc"], row["auroc_lo"], row["auroc_hi"])


def integer(value) -> str:
    return MISSING if is_missing(value) else str(int(float(value)))


def k_label(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def duration(seconds: float) -> str:
    if is_missing(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def mean(values: Iterable[float]) -> float:
    return float(pd.Series(list(values), dtype=float).mean())


def best_flags(values: Sequence[float]) -> list[bool]:
    """Which values are the column's best as displayed, so equal shown values are all marked."""
    shown = [None if is_missing(value) else round(float(value), AUROC_DIGITS) for value in values]
    present = [value for value in shown if value is not None]
    if not present:
        return [False] * len(values)
    return [value == max(present) for value in shown]


# Picking rows.


def by_key(table: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, pd.Series]:
    return {tuple(str(row[key]) for key in keys): row for _, row in table.iterrows()}


def in_run_order(data, table: pd.DataFrame, *then: str) -> pd.DataFrame:
    """Rows sorted by model in run order, budget in budget order, then by ``then``."""
    positions = {
        "model": {model: index for index, model in enumerate(data.models)},
        "budget": {budget: index for index, budget in enumerate(data.budgets)},
    }

    def key(column: pd.Series) -> pd.Series:
        return column.map(positions[column.name]) if column.name in positions else column

    return table.sort_values(["model", "budget", *then], key=key, kind="stable")


def ranked(metrics: pd.DataFrame) -> pd.DataFrame:
    """Best AUROC first; ties to the thesis's selection order, then to the smaller k."""
    order = {selection: index for index, selection in enumerate(("", *SELECTIONS))}
    ranking = metrics.assign(_order=metrics["selection"].map(order).fillna(len(order)))
    ranking = ranking.sort_values(
        ["auroc", "_order", "k"], ascending=[False, True, True], na_position="last", kind="stable"
    )
    return ranking.drop(columns="_order")


def best_over_k(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, selection, budget, model): the best AUROC over k, ties to the smaller k."""
    return ranked(metrics).drop_duplicates(["method", "selection", "budget", "model"])


def best_row(metrics: pd.DataFrame) -> pd.Series | None:
    present = metrics[metrics["auroc"].notna()]
    return None if present.empty else ranked(present).iloc[0]


def baseline_methods(metrics: pd.DataFrame) -> list[str]:
    """The black-box (and blind) methods of the run: every method but the parameter-change and
    supervised ones."""
    found = [
        str(method) for method in metrics["method"].unique() if not (is_param_delta(method) or is_supervised(method))
    ]
    return [method for method in BASELINES if method in found] + sorted(set(found) - set(BASELINES))
