"""The parameter-change score combined with the best black-box attack, scored out of fold.

For each (dataset, model, budget, training setting): the label-free param-delta score over
all layers and every black-box attack's score of the same texts (each attack and K one
candidate; the blind baseline, the white-box gradnorm and ReCaLL, which spends labelled
non-members as its prefix and does not score them, are not). Everything that looks at labels happens inside
cross-validation (stratified folds, shuffled with `seed`), so each text's combined score
comes from the other folds only:

- which black-box candidate is the best: the highest AUROC on the other folds;
- the direction of the param-delta score: flipped when its AUROC on the other folds is below
  0.5 (under some optimizers members move the weights *more*; see the report's section
  "optimizer");
- `combined-rank`: the mean of the two scores' percentiles, each against its distribution on
  the other folds (so held-out texts of different folds are on one scale);
- `combined-logistic`: a logistic regression on the two standardised scores, fitted on the
  other folds.

Higher = member, as everywhere. A method name carries `:<setting>` for an `optimizers:` entry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paramdelta.attacks.gradnorm import NAME as GRADNORM
from paramdelta.config import LABELLED_ATTACKS, PARAM_DELTA, is_param_delta, is_supervised
from paramdelta.metrics import _stratified_folds, auroc_rows

COMBINATIONS = ("combined-rank", "combined-logistic")
NO_BUDGET = "-"  # the budget of a black-box attack's rows
BLIND = "blind"


def _methods(scores: pd.DataFrame, which) -> pd.Series:
    """Whether each row's method is one that `which` accepts (asked once per method name)."""
    names = scores["method"].astype(str)
    return names.isin([name for name in names.unique() if which(name)])


def _black_box(scores: pd.DataFrame, dataset: str, model: str) -> pd.DataFrame:
    """Texts x black-box candidates (one column per attack and K) of one (dataset, model)."""
    rows = scores[
        (scores["dataset"] == dataset)
        & (scores["model"] == model)
        & (scores["budget"].astype(str) == NO_BUDGET)
        & _methods(
            scores,
            lambda name: (
                name not in (BLIND, GRADNORM, *LABELLED_ATTACKS)
                and not is_param_delta(name)
                and not is_supervised(name)
            ),
        )
    ]
    if rows.empty:
        return pd.DataFrame()
    candidate = (
        rows["method"].astype(str)
        + rows["selection"].map(lambda selection: f":{selection}" if isinstance(selection, str) and selection else "")
        + rows["k"].map(lambda k: "" if pd.isna(k) else f"@{k:g}")
    )
    return rows.assign(candidate=candidate).pivot_table(index="text_id", columns="candidate", values="score")


def _percentile(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The fraction of `reference` at or below each value (ties count half)."""
    ordered = np.sort(reference)
    below = np.searchsorted(ordered, values, side="left")
    at_or_below = np.searchsorted(ordered, values, side="right")
    return (below + at_or_below) / (2.0 * ordered.size)


def _out_of_fold(ours: np.ndarray, theirs: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> dict:
    """The two combined scores of every text, from the other folds (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rank, logistic = np.full(labels.size, np.nan), np.full(labels.size, np.nan)
    everything = np.arange(labels.size)
    for held_out in _stratified_folds(labels, folds, np.random.default_rng(seed)):
        train = np.setdiff1d(everything, held_out, assume_unique=True)
        best = int(np.nanargmax(auroc_rows(labels[train], theirs[train].T)))
        sign = 1.0 if auroc_rows(labels[train], ours[train][None, :])[0] >= 0.5 else -1.0
        pair_train = np.column_stack([sign * ours[train], theirs[train, best]])
        pair_test = np.column_stack([sign * ours[held_out], theirs[held_out, best]])
        rank[held_out] = (
            _percentile(pair_train[:, 0], pair_test[:, 0]) + _percentile(pair_train[:, 1], pair_test[:, 1])
        ) / 2
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(pair_train, labels[train])
        logistic[held_out] = model.predict_proba(pair_test)[:, 1]
    return {"combined-rank": rank, "combined-logistic": logistic}


def combined_scores(scores: pd.DataFrame, *, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Per-text combined scores (the columns of a score table, with dataset, model, budget) of
    every (dataset, model, budget, param-delta method) that has black-box scores beside it.

    A group with fewer than `folds` texts of a class is left out (its AUROC could not be
    cross-validated); so is a model without black-box attacks.
    """
    columns = ["dataset", "model", "budget", "text_id", "label", "method", "selection", "k", "score"]
    ours = scores[_methods(scores, is_param_delta) & (scores["selection"] == "all")]
    blocks = []
    for (dataset, model), of_model in ours.groupby(["dataset", "model"], sort=True):
        black_box = _black_box(scores, dataset, model).dropna()
        if black_box.empty:
            continue
        for (budget, method), group in of_model.groupby(["budget", "method"], sort=True):
            group = group.set_index("text_id")
            texts = group.index.intersection(black_box.index).sort_values()
            labels = group.loc[texts, "label"].to_numpy().astype(int)
            if min((labels == 1).sum(), (labels == 0).sum()) < folds:
                continue
            combined = _out_of_fold(
                group.loc[texts, "score"].to_numpy(float), black_box.loc[texts].to_numpy(float), labels, folds, seed
            )
            setting = str(method)[len(PARAM_DELTA) :]  # "" or ":<name>"
            for name, values in combined.items():
                blocks.append(
                    pd.DataFrame(
                        {
                            "dataset": dataset,
                            "model": model,
                            "budget": budget,
                            "text_id": texts,
                            "label": labels,
                            "method": f"{name}{setting}",
                            "selection": None,
                            "k": np.nan,
                            "score": values,
                        }
                    )
                )
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=columns)
