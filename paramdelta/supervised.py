"""Supervised membership classifiers on the per-layer parameter change, scored out of fold.

The param-delta scores (paramdelta.features) use no labels: a fixed rule (members move the
weights less) averaged over a fixed selection of layers. Which layers' change marks a member,
and in which direction, differs between layers and optimizers: on the demo some layers move
less for members and others more, and a mean over layers cancels them. Published white-box
attacks fit a classifier on per-module update profiles instead; this module is that
comparison, kept apart from the unsupervised scores because it needs labelled texts.

Features per text: every layer's min-max normalised L2 change and its top-K% L2 for each K
(the columns of `features.normalise`), one column per (layer, statistic). Every text is
scored by a classifier fitted on the other folds only (stratified, shuffled with `seed`), so
its AUROC is out of fold; the score is the predicted probability of being a member. The
min-max normalisation uses no labels, so fitting it on all texts leaks nothing.

Classifiers (scikit-learn, untuned, so that nothing is tuned on the labels it is scored on):
- `logistic`: standardised features, L2-penalised logistic regression (C = 1).
- `forest`: a random forest of 50 trees, leaves of at least 2 texts (100 gave the same AUROCs on
  the demo within 0.005, at twice the time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from paramdelta.config import DEFAULT_OPTIMIZER, supervised_method

CLASSIFIERS = ("logistic", "forest")


def layer_features(table: pd.DataFrame) -> pd.DataFrame:
    """One row per text (index text_id, sorted), one column per (statistic, layer): the
    normalised columns of a `features.normalise`d delta table."""
    statistics = [column for column in table.columns if column.endswith("_norm")]
    if not statistics:
        raise ValueError("delta table has no normalised columns; pass it through features.normalise first")
    wide = table.pivot(index="text_id", columns="layer", values=statistics)
    wide.columns = [f"{statistic}:{layer}" for statistic, layer in wide.columns]
    return wide.sort_index().fillna(0.0)


def _classifier(name: str, seed: int):
    # scikit-learn (with SciPy, seconds) is imported where it is used, as in attacks.blind.
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    if name == "forest":
        return RandomForestClassifier(n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=1)
    raise ValueError(f"unknown classifier {name!r}; valid: {list(CLASSIFIERS)}")


def out_of_fold_scores(
    features: pd.DataFrame, labels: pd.Series, classifier: str, *, folds: int, seed: int
) -> pd.Series:
    """P(member) of every text (features' index) from a classifier fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = labels.reindex(features.index).to_numpy()
    if np.isnan(y.astype(float)).any():
        raise ValueError("a text of the feature table has no label")
    smaller = min(int((y == 1).sum()), int((y == 0).sum()))
    if smaller < folds:
        raise ValueError(
            f"each class needs at least {folds} texts (folds) for the supervised classifiers, the smaller has {smaller}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(
        _classifier(classifier, seed), features.to_numpy(), y.astype(int), cv=splitter, method="predict_proba"
    )
    return pd.Series(probabilities[:, 1], index=features.index, name="score")


def supervised_table(
    table: pd.DataFrame,
    classifiers: Sequence[str],
    *,
    optimizer: str = DEFAULT_OPTIMIZER,
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Long per-text scores (the columns of features.score_table) of each classifier on a
    normalised delta table; selection and k are empty, as for a black-box attack."""
    labels = table.drop_duplicates("text_id").set_index("text_id")["label"]
    features = layer_features(table)
    blocks = []
    for classifier in classifiers:
        scores = out_of_fold_scores(features, labels, classifier, folds=folds, seed=seed)
        blocks.append(
            pd.DataFrame(
                {
                    "text_id": scores.index,
                    "label": labels.reindex(scores.index).to_numpy(),
                    "method": supervised_method(classifier, optimizer),
                    "selection": None,
                    "k": np.nan,
                    "score": scores.to_numpy(),
                }
            )
        )
    columns = ["text_id", "label", "method", "selection", "k", "score"]
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=columns)
