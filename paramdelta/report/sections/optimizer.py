"""The optimizer as a lever: the parameter-change score under each training setting."""

from __future__ import annotations

import pandas as pd

from paramdelta.config import DEFAULT_OPTIMIZER, PARAM_DELTA, is_param_delta
from paramdelta.report.format import MISSING, auroc_with_interval, budget_heading, integer, interval
from paramdelta.report.tables import plain_table

ID = "optimizer"
HEADING = "Optimizer: the parameter change under each training setting"
CAPTION = (
    "The same texts, trained from the same base weights under each training setting of the run: the "
    "train: block's own (default) and each entry of optimizers:. With AdamW every coordinate moves about "
    "lr a step whatever the size of its gradient, so much of what the gradient says about a text is "
    "normalised away; plain SGD, or Adam with an eps above most gradients, keeps the gradient's size in "
    "the change. Per model and budget: the AUROC over all layers, and with the top-K% of entries per "
    "layer at K chosen by 5-fold cross-validation (the number to quote; see the top-K% section), with "
    "bootstrap 95% intervals, and the texts whose training failed (a NaN or infinite loss) under that setting. "
    "Only the budgets that more than one setting ran are shown."
)
PER_DATASET = True
COLUMNS = [
    "model", "budget", "setting", "what it changes", "AUROC, all layers [95% interval]",
    "AUROC, top-K% elements, cross-validated K [95% interval]", "failed texts",
]  # fmt: skip
TRAIN_FIELDS = ("optimizer", "lr", "eps", "betas", "weight_decay", "momentum", "schedule", "grad_clip")


def setting_name(method: str) -> str:
    return DEFAULT_OPTIMIZER if method == PARAM_DELTA else method.split(":", 1)[1]


def _changes(config: dict, setting: str) -> str:
    """The setting in words: the train: block's optimizer and lr, or what an optimizers: entry changes."""
    train = config.get("train") or {}
    if setting == DEFAULT_OPTIMIZER:
        fields = {key: train[key] for key in ("optimizer", "lr", "eps") if key in train}
        return "train: " + ", ".join(f"{key} {value}" for key, value in fields.items()) if fields else "train:"
    changes = (config.get("optimizers") or {}).get(setting) or {}
    return ", ".join(f"{key} {changes[key]}" for key in TRAIN_FIELDS if key in changes) or MISSING


def context(data) -> dict:
    metrics = data.metrics
    ours = metrics[metrics["method"].map(is_param_delta)]
    settings = list(dict.fromkeys(ours["method"]))
    if len(settings) < 2:
        return {"table": None}
    order = {method: index for index, method in enumerate(sorted(settings, key=lambda m: (m != PARAM_DELTA, m)))}
    topk = data.topk_cv
    if "method" in topk.columns:
        topk = topk[topk["selection"] == "topk-elements"]
    else:
        topk = topk.iloc[0:0]
    rows = []
    everything = ours[ours["selection"] == "all"]
    # Only the (model, budget) pairs that more than one setting trained.
    compared = everything.groupby(["model", "budget"])["method"].transform("nunique") > 1
    everything = everything[compared]
    models = {model: index for index, model in enumerate(data.models)}
    budgets = {budget: index for index, budget in enumerate(data.budgets)}
    everything = everything.assign(
        _model=everything["model"].map(models),
        _budget=everything["budget"].map(budgets),
        _method=everything["method"].map(order),
    ).sort_values(["_model", "_budget", "_method"], kind="stable")
    for _, row in everything.iterrows():
        cv = topk[
            (topk["model"] == row["model"]) & (topk["budget"] == row["budget"]) & (topk["method"] == row["method"])
        ]
        setting = setting_name(row["method"])
        rows.append(
            [
                row["model"],
                budget_heading(row["budget"]),
                setting,
                _changes(data.config, setting),
                auroc_with_interval(row),
                interval(*cv.iloc[0][["auroc_cv", "auroc_cv_lo", "auroc_cv_hi"]]) if not cv.empty else MISSING,
                integer(row["n_failed"]) if "n_failed" in row.index else MISSING,
            ]
        )
    return {"table": plain_table(COLUMNS, rows, label_columns=4), "best": _best(topk)}


def _best(topk: pd.DataFrame) -> str | None:
    """One sentence: the setting, model and budget with the best cross-validated top-K% AUROC."""
    if topk.empty:
        return None
    best = topk.loc[topk["auroc_cv"].astype(float).idxmax()]
    return (
        f"Best cross-validated top-K% AUROC: {setting_name(best['method'])} on {best['model']}, "
        f"{budget_heading(best['budget'])}: {interval(best['auroc_cv'], best['auroc_cv_lo'], best['auroc_cv_hi'])}."
    )
