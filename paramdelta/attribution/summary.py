"""Influence tables, the leave-one-out truth and how well each method tracks it.

Orientation everywhere: higher influence = the training set lowered the evaluation loss more.
The truth (eq. 1) is the rise of the evaluation loss when the set is left out of training,
``sum_j L(z'_j, θ_-Z) - L(z'_j, θ_0)``: eq. (1) as printed subtracts the other way round, but
its table 3 gives the similar tasks, whose removal hurts, positive truth, so the printed sign
is read as a slip. UnTrac's influence is the rise of the evaluation loss after ascending on the
training set (eq. 2), UnTrac-Inv's the rise of the training set's loss after ascending on the
evaluation set (eq. 4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["experiment", "method", "variant", "optimizer", "lr", "evaluation", "training", "seed", "epoch", "influence"]
KEYS = ["experiment", "method", "variant", "optimizer", "lr", "evaluation", "epoch"]
TRUTH = "leave-one-out"


def truth(full: dict[str, float], left_out: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Leave-one-out rows from each evaluation set's loss under the full model (``full``) and
    under the model trained without each training set (``left_out[training][evaluation]``)."""
    return pd.DataFrame(
        [
            {"method": TRUTH, "evaluation": evaluation, "training": training, "influence": losses[evaluation] - base}
            for training, losses in left_out.items()
            for evaluation, base in full.items()
        ]
    )


def unlearning(rows: list[dict] | pd.DataFrame, *, method: str, forgotten: str) -> pd.DataFrame:
    """UnTrac or UnTrac-Inv rows from one run's recorded losses (``unlearn.ascend``'s rows): the
    rise of each measured set's loss from epoch 0 to every later epoch."""
    losses = pd.DataFrame(rows)
    before = losses[losses["epoch"] == 0].set_index("set")["loss"]
    after = losses[losses["epoch"] > 0]
    rise = after["loss"].to_numpy() - before.loc[after["set"]].to_numpy()
    measured, other = ("evaluation", "training") if method == "untrac" else ("training", "evaluation")
    return pd.DataFrame(
        {
            "method": method,
            measured: after["set"].to_numpy(),
            other: forgotten,
            "epoch": after["epoch"],
            "influence": rise,
        }
    )


def complete(rows: pd.DataFrame, **fields) -> pd.DataFrame:
    """Rows with every column of influence.csv, the missing ones set from ``fields`` (or NaN)."""
    rows = rows.assign(**{k: v for k, v in fields.items() if k not in rows or rows[k].isna().all()})
    for column in COLUMNS:
        if column not in rows:
            rows[column] = np.nan
    return rows[COLUMNS].astype({"seed": "int64", "epoch": "Int64"})


def _pearson(frame: pd.DataFrame) -> float:
    x, y = frame["influence"].to_numpy(float), frame[TRUTH].to_numpy(float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan  # two points always correlate perfectly; a constant has no correlation
    return float(np.corrcoef(x, y)[0, 1])


def per_seed_correlation(influence: pd.DataFrame) -> pd.DataFrame:
    """Pearson r between each method's influence and the truth across training sets, per seed,
    evaluation set, epoch and unlearning setting."""
    truth_rows = influence[influence["method"] == TRUTH]
    truth_values = truth_rows.set_index(["experiment", "evaluation", "training", "seed"])["influence"].rename(TRUTH)
    estimates = influence[influence["method"] != TRUTH].join(
        truth_values, on=["experiment", "evaluation", "training", "seed"], how="inner"
    )
    grouped = estimates.groupby([*KEYS, "seed"], dropna=False, sort=False)
    return grouped[["influence", TRUTH]].apply(_pearson).rename("r").reset_index()


def correlation(influence: pd.DataFrame) -> pd.DataFrame:
    """correlation.csv: the per-seed r's mean, standard deviation (ddof 1) and count."""
    per_seed = per_seed_correlation(influence)
    table = (
        per_seed.groupby(KEYS, dropna=False, sort=False)["r"].agg(mean="mean", std="std", n_seeds="count").reset_index()
    )
    return table
