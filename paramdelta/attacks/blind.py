"""Blind baseline: guess membership from the text alone, with no model (METHOD.md section 3).

Das, Zhang and Tramer (2024, "Blind Baselines Beat Membership Inference Attacks for
Foundation Models") show that a bag-of-words classifier separates the members and
non-members of WikiMIA-style data sets (AUROC 0.99) because they come from different time
periods. Whatever this classifier reaches is the part of any attack's AUROC that the data
set's distribution shift alone explains; on a random member/non-member split it is 0.5.

Every text gets an out-of-fold probability of being a member: the classifier that scores
a text was fitted (vocabulary included) on the other folds only. Features are binary word
presence (lowercased word unigrams of 2+ characters), the classifier an L2 logistic
regression (C = 1). Binary presence rather than TF-IDF because l2-normalised TF-IDF weights
dilute a word that marks every member by document length and spread its weight over
correlated words: on the synthetic corpus with one such word, TF-IDF + logistic regression
reaches an out-of-fold AUROC of 0.5 to 0.6, binary presence 1.0. Das et al. tune the
vocabulary size (10-62 TF-IDF or count features) and the classifier (naive Bayes, random
forest, boosting, stacking) per data set and report the mean over ten 80/20 splits; one
fixed, untuned pipeline is used here so that the baseline is not tuned on the labels it is
evaluated on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from paramdelta.config import defaults

_BLIND = defaults("baselines", "blind")  # config/schema.yaml's folds and seed


def blind_scores(
    texts: Sequence[str], labels: Sequence[int], n_folds: int = _BLIND["folds"], seed: int = _BLIND["seed"]
) -> np.ndarray:
    """Out-of-fold P(member | text) of every text, in input order (higher = member).

    Folds are stratified by label and shuffled with ``seed``; each class needs at least
    ``n_folds`` texts.
    """
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    smallest_class = min(int((labels == 1).sum()), int((labels == 0).sum()))
    if smallest_class < n_folds:
        raise ValueError(f"each class needs at least n_folds = {n_folds} texts, the smaller has {smallest_class}")
    # scikit-learn (with SciPy, about 2.5 s) is imported here: the jobs that import the attacks
    # package to run a model do not pay for it.
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    classifier = make_pipeline(CountVectorizer(binary=True), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(classifier, list(texts), labels, cv=folds, method="predict_proba")
    return probabilities[:, 1]
