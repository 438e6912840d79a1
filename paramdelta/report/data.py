"""What the report reads: the run's tables, from the workflow's files or given directly.

``load`` reads the files the workflow wrote; ``run_data`` checks the tables' columns,
normalises their types (budgets as strings, baselines' empty selection) and holds them
in a ``RunData``, which every section reads, restricted to one data set at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from paramdelta.features import METHOD
from paramdelta.report.format import NO_BUDGET, ordered_budgets

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
    "curve": ("dataset", "model", "budget", "method", "layer", "group", "epoch", "label", "l2"),
}
_TEXT_COLUMNS = ("dataset", "model", "method", "text_id", "status", "layer", "group", "rule")
_NUMBER_COLUMNS = ("auroc", "auroc_lo", "auroc_hi", "k", "score", "l2_total", "mean_l2", "mean_norm", "s", "l2")


def load(
    *,
    metrics: str | os.PathLike,
    ttest: str | os.PathLike,
    correlation: str | os.PathLike,
    topk_cv: str | os.PathLike,
    scores: Iterable[str | os.PathLike],
    texts: Iterable[str | os.PathLike],
    layers: Iterable[str | os.PathLike],
    change: Iterable[str | os.PathLike],
    benchmarks: str | os.PathLike,
    gpus: dict[str, int],
    curve: Iterable[str | os.PathLike] = (),
) -> dict[str, pd.DataFrame]:
    """Every table of the report, keyed as ``render`` takes them, from the workflow's files:
    CSV summaries, per-(data set, model, budget) parquet tables, and Snakemake's per-job
    benchmark records under the folder ``benchmarks`` (``gpus``: GPUs per model slug)."""
    return {
        "metrics": pd.read_csv(metrics, dtype={"budget": str}),
        "scores": _concat(scores),
        "ttest": pd.read_csv(ttest, dtype={"budget": str}),
        "correlation": pd.read_csv(correlation),
        "texts": _concat(texts),
        "layers": _concat(layers),
        "change": _concat(change),
        "topk_cv": pd.read_csv(topk_cv, dtype={"budget": str}),
        "benchmarks": benchmark_records(Path(benchmarks), gpus),
        "curve": _concat(curve) if curve else None,
    }


def _concat(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)


def benchmark_records(root: Path, gpus: dict[str, int]) -> pd.DataFrame:
    """Snakemake's per-job benchmark files: rule, job (its wildcards), seconds, memory, GPUs."""
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rule, *job = path.relative_to(root).with_suffix("").parts
        model = next((part for part in job if part in gpus), None)
        rows.append(
            {
                "rule": rule,
                "job": "/".join(job),
                "s": float(record["s"]),
                "max_rss": float(record["max_rss"]),
                "cpu_time": float(record.get("cpu_time", float("nan"))),
                "gpus": gpus.get(model, 0),
            }
        )
    return pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS["benchmarks"]))


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
    curve: pd.DataFrame
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
        found = list(dict.fromkeys(str(value) for column in columns for value in column))
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

        tables = ("metrics", "scores", "ttest", "correlation", "texts", "layers", "change", "topk_cv", "curve")
        return replace(
            self,
            **{name: rows(getattr(self, name)) for name in tables},
            anchor=f"d{index}",
            dataset=dataset,
        )

    def per_dataset(self) -> list[RunData]:
        """The run once per data set, in configuration order."""
        return [self.for_dataset(dataset, index) for index, dataset in enumerate(self.datasets)]

    def main_rows(self) -> pd.DataFrame:
        """The thesis's headline configuration: the parameter-change score over all layers."""
        return self.metrics[(self.metrics["method"] == METHOD) & (self.metrics["selection"] == "all")]


def run_data(meta: dict, **tables: pd.DataFrame | None) -> RunData:
    """The tables checked and normalised; an optional table left out (or None) is empty."""
    prepared = {name: _prepare(tables.get(name), name) for name in REQUIRED_COLUMNS}
    # The per-text and per-layer tables of the report's sections are the `train:` block's own
    # setting; the other training settings (optimizers:) are compared from the metrics.
    for name in ("ttest", "texts", "layers", "change"):
        if "method" in prepared[name].columns:
            prepared[name] = prepared[name][prepared[name]["method"] == METHOD]
    metrics = prepared["metrics"]
    key = ["dataset", "model", "budget", "method", "selection", "k"]
    duplicated = metrics[metrics.duplicated(key, keep=False)]
    if not duplicated.empty:
        raise ValueError(f"metrics hold more than one row for {duplicated[key].drop_duplicates().to_dict('records')}")
    return RunData(**prepared, meta=meta)


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
    for column in _TEXT_COLUMNS:
        if column in table.columns:
            table[column] = table[column].astype(str)
    for column in _NUMBER_COLUMNS:
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _budget_label(value) -> str:
    # A CSV reader turns a budget column without "es" into integers or floats.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
