"""What the attribution page reads: the influence and correlation tables, checked and normalised.

``influence.csv`` has one row per (experiment, method, setting, evaluation set, training set,
seed, unlearning epoch); ``correlation.csv`` the Pearson r across training sets between a
method's influence and leave-one-out's, as mean and std over seeds. Rows of the main settings
have variant "default"; the sensitivity sweep's rows have variant "optimizer" or "lr".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = {
    "influence": (
        "experiment", "method", "variant", "optimizer", "lr", "evaluation", "training", "seed", "epoch", "influence",
    ),
    "correlation": ("experiment", "method", "variant", "optimizer", "lr", "evaluation", "epoch", "mean", "std", "n_seeds"),
}  # fmt: skip
_TEXT_COLUMNS = ("experiment", "method", "variant", "optimizer", "evaluation", "training")
_NUMBER_COLUMNS = ("lr", "seed", "epoch", "influence", "mean", "std", "n_seeds")
# A method's rows of one setting on one evaluation set: its final epoch is the largest among them.
SETTING = ["experiment", "method", "variant", "optimizer", "lr", "evaluation"]

TRUTH = "leave-one-out"
UNTRAC, UNTRAC_INV = "untrac", "untrac-inv"
UNLEARNING = (UNTRAC, UNTRAC_INV)
DEFAULT = "default"
SWEEPS = {"optimizer": "optimizer", "lr": "learning rate"}
# The paper's table order; a method not listed follows by name.
METHODS = ("graddot", "gradcos", "hif-arnoldi", "hif-lissa", "tracin", UNTRAC, UNTRAC_INV)
METHOD_LABELS = {
    "graddot": "GradDot",
    "gradcos": "GradCos",
    "hif-arnoldi": "HIF (Arnoldi)",
    "hif-lissa": "HIF (LiSSA)",
    "tracin": "TracIn",
    UNTRAC: "UnTrac",
    UNTRAC_INV: "UnTrac-Inv",
    TRUTH: "leave-one-out (truth)",
}
# Non-breaking spaces keep "mean ± std" on one line in a narrow column.
PLUS_MINUS = "\u00a0±\u00a0"
# Pearson r across fewer training sets is undefined (with two it is ±1 whatever the method).
MIN_TRAINING_SETS = 3


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def ordered_methods(found) -> list[str]:
    """The methods among ``found``, leave-one-out excluded, in the paper's order."""
    found = {str(method) for method in found} - {TRUTH}
    return [method for method in METHODS if method in found] + sorted(found - set(METHODS))


def read(influence_csv: str | os.PathLike, correlation_csv: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Set names stay text even when they look like numbers.
    text = {column: str for column in _TEXT_COLUMNS}
    return pd.read_csv(influence_csv, dtype=text), pd.read_csv(correlation_csv, dtype=text)


def prepare(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table with its columns checked, text as str (empty, not NaN) and numbers as floats."""
    missing = [column for column in REQUIRED_COLUMNS[name] if column not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}")
    table = table.copy()
    for column in _TEXT_COLUMNS:
        if column in table.columns:
            table[column] = table[column].fillna("").astype(str)
    table["variant"] = table["variant"].replace("", DEFAULT)
    for column in _NUMBER_COLUMNS:
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def final_epoch(table: pd.DataFrame) -> pd.DataFrame:
    """Each setting's rows at its last unlearning epoch; rows without epochs (other methods) as they are."""
    last = table.groupby(SETTING, dropna=False, sort=False)["epoch"].transform("max")
    return table[table["epoch"].isna() | (table["epoch"] == last)]


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    sizes: dict[str, int]
    evaluations: list[str]
    trainings: list[str]
    seeds: int

    @property
    def equal_sizes(self) -> bool | None:
        """Whether the training sets are of equal size, as the paper's table 2 tells its two halves
        apart; None where some size is not given."""
        if not self.trainings or any(training not in self.sizes for training in self.trainings):
            return None
        return len({self.sizes[training] for training in self.trainings}) == 1

    @property
    def sizes_text(self) -> str:
        if self.equal_sizes is None:
            return "sizes not given"
        if self.equal_sizes:
            return f"equal: {self.sizes[self.trainings[0]]} examples each"
        return "unequal: " + ", ".join(f"{training} {self.sizes[training]}" for training in self.trainings)

    @property
    def correlation_defined(self) -> bool:
        """False where too few training sets are known; with none known the table is taken as it is."""
        return not self.trainings or len(self.trainings) >= MIN_TRAINING_SETS


@dataclass(frozen=True)
class AttributionData:
    influence: pd.DataFrame
    correlation: pd.DataFrame
    experiments: list[Experiment]


def attribution_data(influence: pd.DataFrame, correlation: pd.DataFrame, metadata: dict) -> AttributionData:
    """The tables checked and normalised, with each experiment's sets in order.

    Experiments come in the order of ``metadata``, then those only the tables name; training
    sets in the order of the experiment's ``sizes``, then as the influence table lists them.
    An experiment with fewer than ``MIN_TRAINING_SETS`` training sets gets no correlation: its
    r values are set to NaN whatever the table holds.
    """
    influence = prepare(influence, "influence")
    correlation = prepare(correlation, "correlation")
    names = _unique([*map(str, metadata), *influence["experiment"], *correlation["experiment"]])
    experiments = []
    for name in names:
        meta = metadata.get(name) or {}
        # A set read from a file without a row limit has no size known before it is read.
        given = (meta.get("sizes") or {}).items()
        sizes = {str(training): int(size) for training, size in given if size is not None}
        rows = influence[influence["experiment"] == name]
        found = _unique(rows["training"])
        trainings = [training for training in sizes if training in found or rows.empty] + [
            training for training in found if training not in sizes
        ]
        evaluations = _unique([*rows["evaluation"], *correlation.loc[correlation["experiment"] == name, "evaluation"]])
        seeds = rows.loc[rows["variant"] == DEFAULT, "seed"].nunique()
        experiments.append(Experiment(name, str(meta.get("title") or name), sizes, evaluations, trainings, seeds))
    undefined = [experiment.name for experiment in experiments if not experiment.correlation_defined]
    correlation.loc[correlation["experiment"].isin(undefined), ["mean", "std"]] = np.nan
    return AttributionData(influence, correlation, experiments)


def _unique(values) -> list[str]:
    return list(dict.fromkeys(str(value) for value in values))
