"""Evaluation of membership scores: AUROC with bootstrap intervals, TPR at low FPR, tests.

Scores are oriented so that higher means more likely a member; labels are 1 for members
and 0 for non-members. The AUROC is the attack metric of the thesis (eq. 4.3.1); its
interval is a stratified percentile bootstrap, and TPR is read at a fixed low FPR
(eq. 4.3.2) together with the FPR the finite set of non-members actually allows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from paramdelta.config import PARAM_DELTA, defaults, is_param_delta, is_supervised, method_name

# config/schema.yaml's metrics.bootstrap and metrics.seed: the defaults of a call from outside the workflow.
_METRICS = defaults("metrics")

SUMMARY_COLUMNS = (
    "auroc",
    "auroc_lo",
    "auroc_hi",
    "tpr_at_1fpr",
    "fpr_at_1fpr",
    "tpr_at_5fpr",
    "fpr_at_5fpr",
    "n_members",
    "n_nonmembers",
)


def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-d and of equal length, got shapes {labels.shape} and {scores.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (non-member) or 1 (member), got {sorted(set(labels.tolist()))}")
    return labels.astype(int), scores


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def auroc(labels, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    labels, scores = _labels_scores(labels, scores)
    if not _both_classes(labels):
        return float("nan")
    from sklearn.metrics import roc_auc_score  # imported where used: the scores jobs need none of it

    return float(roc_auc_score(labels, scores))


def auroc_rows(labels, score_matrix) -> np.ndarray:
    """AUROC of every row of ``score_matrix`` (shape rows x texts) against the same labels.

    Uses the Mann-Whitney identity AUROC = (rank sum of members - n1(n1+1)/2) / (n1 n0)
    with average ranks for ties, which equals ``roc_auc_score`` and vectorises over rows.
    A row containing NaN gives NaN.
    """
    labels = np.asarray(labels).astype(int)
    score_matrix = np.atleast_2d(np.asarray(score_matrix, dtype=float))
    if score_matrix.shape[1] != labels.shape[0]:
        raise ValueError(f"score matrix has {score_matrix.shape[1]} columns but there are {labels.shape[0]} labels")
    is_member = labels == 1
    n_members = int(is_member.sum())
    n_nonmembers = labels.shape[0] - n_members
    if n_members == 0 or n_nonmembers == 0:
        return np.full(score_matrix.shape[0], np.nan)
    ranks = stats.rankdata(score_matrix, axis=1)
    member_rank_sum = ranks[:, is_member].sum(axis=1)
    return (member_rank_sum - n_members * (n_members + 1) / 2) / (n_members * n_nonmembers)


def auroc_ci(
    labels, scores, *, n_boot: int = _METRICS["bootstrap"], seed: int = _METRICS["seed"], level: float = 0.95
) -> tuple[float, float]:
    """Stratified bootstrap percentile interval of the AUROC.

    Members and non-members are resampled separately with replacement, so every
    replicate keeps the original class sizes. (NaN, NaN) when only one class is present.
    """
    labels, scores = _labels_scores(labels, scores)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if not _both_classes(labels):
        return float("nan"), float("nan")
    members = scores[labels == 1]
    nonmembers = scores[labels == 0]
    rng = np.random.default_rng(seed)
    drawn_members = rng.integers(0, members.size, size=(n_boot, members.size))
    drawn_nonmembers = rng.integers(0, nonmembers.size, size=(n_boot, nonmembers.size))
    # A replicate as counts per text: its AUROC is w1 . C . w0 / (n1 n0), with C[i, j] = 1 when
    # member i outscores non-member j (1/2 on a tie), the Mann-Whitney statistic of the
    # resampled texts; exact (sums of halves), so equal to ranking every replicate, 4x faster.
    wins = (members[:, None] > nonmembers[None, :]) + 0.5 * (members[:, None] == nonmembers[None, :])
    weights_members, weights_nonmembers = (
        _counts(drawn_members, members.size),
        _counts(drawn_nonmembers, nonmembers.size),
    )
    replicates = ((weights_members @ wins) * weights_nonmembers).sum(axis=1) / (members.size * nonmembers.size)
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def _counts(drawn: np.ndarray, n: int) -> np.ndarray:
    """Per row of `drawn` (indices into n texts), how often each text was drawn."""
    rows = drawn.shape[0]
    flat = (drawn + np.arange(rows)[:, None] * n).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)


def tpr_at_fpr(labels, scores, fpr: float) -> tuple[float, float]:
    """(TPR, FPR reached) at the most permissive threshold whose FPR is <= ``fpr``.

    With n non-members the FPR moves in steps of 1/n, so the reached FPR is returned too.
    """
    return tpr_at_fprs(labels, scores, (fpr,))[0]


def tpr_at_fprs(labels, scores, fprs: Sequence[float]) -> list[tuple[float, float]]:
    """tpr_at_fpr at each of ``fprs``, from one ROC curve."""
    labels, scores = _labels_scores(labels, scores)
    for fpr in fprs:
        if not 0 <= fpr <= 1:
            raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    if not _both_classes(labels):
        return [(float("nan"), float("nan"))] * len(fprs)
    # drop_intermediate would discard collinear points, some of which are the answer.
    from sklearn.metrics import roc_curve

    curve_fprs, curve_tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    reached = []
    for fpr in fprs:
        last_allowed = np.flatnonzero(curve_fprs <= fpr)[-1]
        reached.append((float(curve_tprs[last_allowed]), float(curve_fprs[last_allowed])))
    return reached


def _summary_row(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> dict:
    low, high = auroc_ci(labels, scores, n_boot=n_boot, seed=seed)
    (tpr_1, fpr_1), (tpr_5, fpr_5) = tpr_at_fprs(labels, scores, (0.01, 0.05))
    return {
        "auroc": auroc(labels, scores),
        "auroc_lo": low,
        "auroc_hi": high,
        "tpr_at_1fpr": tpr_1,
        "fpr_at_1fpr": fpr_1,
        "tpr_at_5fpr": tpr_5,
        "fpr_at_5fpr": fpr_5,
        "n_members": int((labels == 1).sum()),
        "n_nonmembers": int((labels == 0).sum()),
    }


def summarise(
    scores: pd.DataFrame, by: Sequence[str], *, n_boot: int = _METRICS["bootstrap"], seed: int = _METRICS["seed"]
) -> pd.DataFrame:
    """One row of metrics per group of ``by``; groups with a NaN key (e.g. k) are kept."""
    by = list(by)
    missing = [column for column in ["label", "score", *by] if column not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks columns {missing}")
    groups = scores.groupby(by, dropna=False, sort=True) if by else [((), scores)]
    rows = []
    for key, group in groups:
        row = dict(zip(by, key))
        row.update(_summary_row(group["label"].to_numpy(), group["score"].to_numpy(), n_boot, seed))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])


def member_ttest(values, labels) -> dict:
    """Welch two-sample t-test of ``values`` between members and non-members."""
    labels, values = _labels_scores(labels, values)
    members = values[labels == 1]
    nonmembers = values[labels == 0]
    result = stats.ttest_ind(members, nonmembers, equal_var=False)
    return {
        "mean_members": float(members.mean()) if members.size else float("nan"),
        "mean_nonmembers": float(nonmembers.mean()) if nonmembers.size else float("nan"),
        "t": float(result.statistic),
        "p": float(result.pvalue),
        "n_members": int(members.size),
        "n_nonmembers": int(nonmembers.size),
    }


def budget_correlation(metrics: pd.DataFrame) -> dict:
    """Pearson correlation between the epoch budget and the AUROC over the given rows.

    Only budgets that parse as integers count (early stopping, "es", has no epoch count);
    r and p are NaN with fewer than 3 distinct numeric budgets or a constant AUROC.
    """
    missing = [column for column in ("budget", "auroc") if column not in metrics.columns]
    if missing:
        raise ValueError(f"metrics table lacks columns {missing}")
    budgets = pd.to_numeric(metrics["budget"].astype(str), errors="coerce")
    aurocs = metrics["auroc"].astype(float)
    usable = budgets.notna() & (budgets == budgets.round()) & aurocs.notna()
    budgets, aurocs = budgets[usable].to_numpy(float), aurocs[usable].to_numpy(float)
    if np.unique(budgets).size < 3 or np.unique(aurocs).size < 2:
        return {"r": float("nan"), "p": float("nan"), "n": int(budgets.size)}
    result = stats.pearsonr(budgets, aurocs)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n": int(budgets.size)}


def roc_points(labels, scores) -> pd.DataFrame:
    """ROC curve points (columns fpr, tpr) for plotting; empty when only one class is present."""
    labels, scores = _labels_scores(labels, scores)
    if not _both_classes(labels):
        return pd.DataFrame({"fpr": pd.Series(dtype=float), "tpr": pd.Series(dtype=float)})
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(labels, scores)
    return pd.DataFrame({"fpr": fprs, "tpr": tprs})


def cross_validated_k(
    scores: pd.DataFrame, *, n_folds: int = 5, seed: int = _METRICS["seed"]
) -> tuple[list[float], list[int]]:
    """Held-out AUROC per fold, each with its own k chosen on the other folds.

    Choosing the k with the best AUROC on the evaluation texts themselves is optimistic;
    here each fold's k is chosen by AUROC on the other folds (ties go to the smaller k) and
    the held-out fold is scored with it. The AUROCs are per fold, not one AUROC over the
    pooled out-of-fold scores: scores made with different k are not on one scale. Returns
    the AUROC of each fold and the k each chose.
    """
    labels, matrix, ks = _scores_by_k(scores)
    folds = _stratified_folds(labels, n_folds, np.random.default_rng(seed))
    return _cv_folds(labels, matrix, folds, ks)


def cross_validated_k_interval(
    scores: pd.DataFrame,
    *,
    n_folds: int = 5,
    n_boot: int = _METRICS["bootstrap"],
    seed: int = _METRICS["seed"],
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the mean fold AUROC of cross_validated_k, the selection included.

    Each replicate resamples the texts (members and non-members separately, with
    replacement), splits the distinct texts drawn into folds (a text drawn twice stays in
    one fold, so it never helps choose the k it is scored with) and runs the whole
    selection again: the interval carries the variability of the chosen k as well as that
    of the AUROC.

    All replicates at once: a resample is a count per text, and the AUROC of counted texts
    is (w1 . C_k . w0) / (sum w1 * sum w0), where C_k[i, j] is 1 when member i outscores
    non-member j with k (1/2 on a tie): the Mann-Whitney AUROC with the counts as weights.
    """
    labels, matrix, _ = _scores_by_k(scores)
    members, nonmembers = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    one, zero = matrix[members].T[:, :, None], matrix[nonmembers].T[:, None, :]  # [k, members, 1], [k, 1, non-members]
    wins = (one > zero) + 0.5 * (one == zero)  # [k, members, non-members]
    rng = np.random.default_rng(seed)
    # The draws, replicate by replicate (counts per text, and each drawn text's fold; -1: not drawn).
    counts, folds = {1: [], 0: []}, {1: [], 0: []}
    for _ in range(n_boot):
        drawn_counts = {
            label: np.bincount(rng.choice(group.size, group.size), minlength=group.size)
            for label, group in ((1, members), (0, nonmembers))
        }
        if min(np.count_nonzero(c) for c in drawn_counts.values()) < n_folds:
            continue
        for label, count in drawn_counts.items():
            drawn = np.flatnonzero(count)
            fold_of = np.full(count.size, -1)
            fold_of[rng.permutation(drawn)] = np.arange(drawn.size) % n_folds
            counts[label].append(count)
            folds[label].append(fold_of)
    if not counts[1]:
        return float("nan"), float("nan")
    # Rows replicate x fold: the held-out fold's counts, and the other folds' counts.
    held, train = {}, {}
    for label in (1, 0):
        count, fold_of = np.array(counts[label], float)[:, None, :], np.array(folds[label])[:, None, :]
        in_fold = fold_of == np.arange(n_folds)[None, :, None]  # [replicate, fold, text]
        held[label] = (count * in_fold).reshape(-1, count.shape[-1])
        train[label] = (count * (~in_fold & (fold_of >= 0))).reshape(-1, count.shape[-1])
    train_auroc = _weighted_aurocs(wins, train[1], train[0])  # [k, replicate x fold]
    held_auroc = _weighted_aurocs(wins, held[1], held[0])
    best = np.argmax(train_auroc, axis=0)  # ties go to the smaller k, as in cross_validated_k
    per_fold = held_auroc[best, np.arange(best.size)].reshape(-1, n_folds)
    tail = (1 - level) / 2
    low, high = np.quantile(per_fold.mean(axis=1), [tail, 1 - tail])
    return float(low), float(high)


def _weighted_aurocs(wins: np.ndarray, one: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """AUROC of every k (wins[k]) for every row of member weights `one` and non-member weights `zero`."""
    pairs = np.stack([np.einsum("ri,ij,rj->r", one, wins_k, zero, optimize=True) for wins_k in wins])
    return pairs / (one.sum(axis=1) * zero.sum(axis=1))


def _scores_by_k(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [texts], scores [texts, k] and the ks (ascending) of one selection's scores."""
    missing = [column for column in ("text_id", "label", "k", "score") if column not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks columns {missing}")
    if "selection" in scores.columns and scores["selection"].nunique() > 1:
        raise ValueError(f"scores must hold one selection, got {sorted(scores['selection'].unique())}")
    if scores.duplicated(["text_id", "k"]).any():
        raise ValueError("scores hold more than one score per (text_id, k)")
    by_k = scores.pivot(index="text_id", columns="k", values="score").sort_index(axis=1)
    if by_k.isna().to_numpy().any():
        raise ValueError("every text needs a score for every k")
    labels = scores.drop_duplicates("text_id").set_index("text_id")["label"].reindex(by_k.index).to_numpy(int)
    return labels, by_k.to_numpy(float), by_k.columns.to_numpy()


def _stratified_folds(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of each fold: every class shuffled and dealt round the folds in turn."""
    fold_of = np.empty(labels.size, dtype=int)
    for label in (0, 1):
        texts = rng.permutation(np.flatnonzero(labels == label))
        if 0 < texts.size < n_folds:
            raise ValueError(f"{texts.size} texts of label {label}: too few for {n_folds} cross-validation folds")
        fold_of[texts] = np.arange(texts.size) % n_folds
    return [np.flatnonzero(fold_of == fold) for fold in range(n_folds)]


def _cv_folds(labels, matrix, folds, ks) -> tuple[list[float], list[int]]:
    """Per fold: k chosen by AUROC on the other folds, AUROC of the fold with it."""
    aurocs, chosen = [], []
    everything = np.arange(labels.size)
    for held_out in folds:
        train = np.setdiff1d(everything, held_out, assume_unique=True)
        best = int(np.nanargmax(auroc_rows(labels[train], matrix[train].T)))
        aurocs.append(float(auroc_rows(labels[held_out], matrix[held_out, best])[0]))
        chosen.append(int(ks[best]))
    return aurocs, chosen


SCORE_KEYS = ("dataset", "model", "budget", "method", "selection", "k")


def training_method(method: str) -> str:
    """The param-delta method (training setting) a method's scores come from: itself for a
    param-delta method, the setting of a supervised classifier (supervised-logistic:sgd ->
    param-delta:sgd), and the method itself for any other."""
    method = str(method)
    if not is_supervised(method):
        return method
    _, _, setting = method.partition(":")
    return method_name(setting) if setting else PARAM_DELTA


def metrics_table(
    scores: pd.DataFrame, texts: pd.DataFrame, *, n_boot: int = _METRICS["bootstrap"], seed: int = _METRICS["seed"]
) -> pd.DataFrame:
    """The tidy metrics table: one row per (dataset, model, budget, method, selection, k).

    `texts` (per-text training records with a `status` column) gives the number of
    failed texts of each (dataset, model, budget, and method when it has that column: one
    per training setting); they have no score and are not in the AUROC, so the count is
    reported beside it.
    """
    table = summarise(scores, SCORE_KEYS, n_boot=n_boot, seed=seed)
    keys = ["dataset", "model", "budget", *(["method"] if "method" in texts.columns else [])]
    failed = (
        texts.assign(failed=texts["status"] != "ok")
        .groupby(keys, as_index=False)["failed"]
        .sum()
        .rename(columns={"failed": "n_failed"})
    )
    # A supervised classifier's texts are those of the training setting its features come from.
    table["_setting"] = table["method"].map(training_method)
    failed = failed.rename(columns={"method": "_setting"}) if "method" in keys else failed
    keys = ["_setting" if key == "method" else key for key in keys]
    table = table.merge(failed, on=keys, how="left").drop(columns="_setting")
    table["n_failed"] = table["n_failed"].fillna(0).astype(int)
    return table


def ttest_table(scores: pd.DataFrame, change: pd.DataFrame | None = None) -> pd.DataFrame:
    """Members vs non-members of the parameter change, Welch's t-test (thesis 5.1.4), per
    (dataset, model, budget, method): one row per training setting.

    mean_members/mean_nonmembers/t/p: the mean normalised change over all layers (minus the
    param-delta score of selection `all`), as the thesis reports it. With `change` (per-text
    rows with `mean_l2`), raw_* columns test the mean raw layer change as well.
    """
    keys = ["dataset", "model", "budget", "method"]
    chosen = scores[scores["method"].map(is_param_delta) & (scores["selection"] == "all")]
    rows = {key: member_ttest(-group["score"], group["label"]) for key, group in chosen.groupby(keys, sort=True)}
    table = pd.DataFrame([{**dict(zip(keys, key)), **row} for key, row in rows.items()])
    if change is None or table.empty:
        return table
    if "method" not in change.columns:
        change = change.assign(method=PARAM_DELTA)
    raw = [
        {
            **dict(zip(keys, key)),
            **{
                f"raw_{name}": value
                for name, value in member_ttest(group["mean_l2"], group["label"]).items()
                if not name.startswith("n_")
            },
        }
        for key, group in change.groupby(keys, sort=True)
    ]
    return table.merge(pd.DataFrame(raw), on=keys, how="left")


MEAN_OVER_MODELS = "mean over models"  # the model column of the thesis-form correlation rows


def correlation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Pearson r of epoch budget against AUROC per (dataset, model, selection, k) of the
    parameter-change method; baselines have no budget.

    With several models, also the statistic in the form of thesis 5.2.4 (r = 0.954,
    p = 0.046 there): r between the budget and the AUROC averaged over the models, one
    point per budget, as rows whose model is MEAN_OVER_MODELS. A budget counts only where
    every model has an AUROC for it, so that the mean is over the same models throughout.
    """
    keys = ["dataset", "model", "method", "selection", "k"]
    ours = metrics[metrics["method"].map(is_param_delta)]
    rows = [
        {**dict(zip(keys, key)), **budget_correlation(group)}
        for key, group in ours.groupby(keys, dropna=False, sort=True)
    ]
    mean_keys = ["dataset", "method", "selection", "k"]
    for key, group in ours[ours["auroc"].notna()].groupby(mean_keys, dropna=False, sort=True):
        models = group["model"].unique()
        if len(models) < 2:
            continue
        per_budget = group.groupby("budget")
        complete = [budget for budget, rows_ in per_budget if rows_["model"].nunique() == len(models)]
        means = group[group["budget"].isin(complete)].groupby("budget", as_index=False)["auroc"].mean()
        rows.append({**dict(zip(mean_keys, key)), "model": MEAN_OVER_MODELS, **budget_correlation(means)})
    return pd.DataFrame(rows, columns=[*keys, "r", "p", "n"])


def topk_cv_table(
    scores: pd.DataFrame, *, n_folds: int = 5, n_boot: int = _METRICS["bootstrap"], seed: int = _METRICS["seed"]
) -> pd.DataFrame:
    """The best top-K% two ways per (dataset, model, budget, method, selection with K).

    `k_eval`/`auroc_eval`: K chosen on the evaluation texts themselves, as the thesis
    reports it (optimistic). `auroc_cv`: the mean over folds of each held-out fold's AUROC
    with the K chosen on the other folds (cross_validated_k); its interval bootstraps the
    whole selection (cross_validated_k_interval); `k_folds` lists the folds' Ks.
    """
    keys = ["dataset", "model", "budget", "method", "selection"]
    chosen = scores[scores["method"].map(is_param_delta) & scores["k"].notna()]
    rows = []
    for key, group in chosen.groupby(keys, sort=True):
        per_k = group.groupby("k").apply(lambda g: auroc(g["label"], g["score"]), include_groups=False)
        fold_aurocs, ks = cross_validated_k(group, n_folds=n_folds, seed=seed)
        lo, hi = cross_validated_k_interval(group, n_folds=n_folds, n_boot=n_boot, seed=seed)
        rows.append(
            {
                **dict(zip(keys, key)),
                "k_eval": int(per_k.idxmax()),
                "auroc_eval": float(per_k.max()),
                "auroc_cv": float(np.nanmean(fold_aurocs)),
                "auroc_cv_lo": lo,
                "auroc_cv_hi": hi,
                "k_folds": ",".join(map(str, ks)),
            }
        )
    return pd.DataFrame(
        rows, columns=[*keys, "k_eval", "auroc_eval", "auroc_cv", "auroc_cv_lo", "auroc_cv_hi", "k_folds"]
    )
