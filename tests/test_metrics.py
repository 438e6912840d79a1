import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from paramdelta.metrics import (
    MEAN_OVER_MODELS,
    SUMMARY_COLUMNS,
    auroc,
    auroc_ci,
    auroc_rows,
    budget_correlation,
    correlation_table,
    cross_validated_k,
    member_ttest,
    metrics_table,
    roc_points,
    summarise,
    topk_cv_table,
    tpr_at_fpr,
    ttest_table,
)

# Sorted by score: 0.9 m, 0.85 n, 0.8 m, 0.7 m, 0.4 n, 0.3 m, 0.2 n, 0.1 n.
HAND_LABELS = [1, 1, 1, 1, 0, 0, 0, 0]
HAND_SCORES = [0.9, 0.8, 0.7, 0.3, 0.85, 0.4, 0.2, 0.1]


def separable_sample(n, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n // 2, dtype=int), np.zeros(n - n // 2, dtype=int)]
    return labels, rng.normal(size=n) + shift * labels


def test_auroc_hand_example():
    assert auroc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)


def test_auroc_counts_ties_as_half():
    assert auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_auroc_single_class_is_nan():
    assert math.isnan(auroc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_auroc_rejects_other_labels():
    with pytest.raises(ValueError, match="labels"):
        auroc([1, 2], [0.1, 0.2])


def test_auroc_rows_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=40)
    matrix = rng.integers(0, 5, size=(6, 40)).astype(float)
    expected = [roc_auc_score(labels, row) for row in matrix]
    np.testing.assert_allclose(auroc_rows(labels, matrix), expected)


def test_auroc_ci_contains_estimate_and_narrows_with_n():
    small_labels, small_scores = separable_sample(40)
    large_labels, large_scores = separable_sample(800)
    small_lo, small_hi = auroc_ci(small_labels, small_scores)
    large_lo, large_hi = auroc_ci(large_labels, large_scores)
    assert small_lo <= auroc(small_labels, small_scores) <= small_hi
    assert large_lo <= auroc(large_labels, large_scores) <= large_hi
    assert large_hi - large_lo < (small_hi - small_lo) / 2


def test_auroc_ci_is_reproducible_and_level_widens():
    labels, scores = separable_sample(60)
    assert auroc_ci(labels, scores, seed=3) == auroc_ci(labels, scores, seed=3)
    lo_90, hi_90 = auroc_ci(labels, scores, level=0.90)
    lo_99, hi_99 = auroc_ci(labels, scores, level=0.99)
    assert lo_99 <= lo_90 and hi_90 <= hi_99


def test_auroc_ci_single_class_is_nan():
    assert all(math.isnan(bound) for bound in auroc_ci([0, 0, 0], [0.1, 0.2, 0.3]))


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.0, (0.25, 0.0)), (0.01, (0.25, 0.0)), (0.3, (0.75, 0.25)), (0.5, (1.0, 0.5)), (1.0, (1.0, 1.0))],
)
def test_tpr_at_fpr_hand_example(target, expected):
    assert tpr_at_fpr(HAND_LABELS, HAND_SCORES, target) == pytest.approx(expected)


def test_tpr_at_fpr_keeps_collinear_points():
    # Three non-members in a row give collinear points (0, .5), (1/3, .5), (2/3, .5), (1, .5);
    # the most permissive threshold within FPR 0.5 reaches FPR 1/3, not 0.
    labels = [1, 0, 0, 0, 1]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert tpr_at_fpr(labels, scores, 0.5) == pytest.approx((0.5, 1 / 3))


def test_tpr_at_fpr_rejects_bad_fpr():
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr(HAND_LABELS, HAND_SCORES, 1.5)


def test_summarise_keeps_nan_k_groups():
    hand = pd.DataFrame({"label": HAND_LABELS, "score": HAND_SCORES})
    scores = pd.concat(
        [
            hand.assign(selection="all", k=np.nan),
            hand.assign(selection="topk-elements", k=5.0, score=-hand["score"]),
        ],
        ignore_index=True,
    )
    summary = summarise(scores, ["selection", "k"], n_boot=200)
    assert list(summary.columns) == ["selection", "k", *SUMMARY_COLUMNS]
    assert len(summary) == 2
    by_selection = summary.set_index("selection")
    assert math.isnan(by_selection.loc["all", "k"])
    assert by_selection.loc["topk-elements", "k"] == 5.0
    assert by_selection.loc["all", "auroc"] == pytest.approx(0.75)
    assert by_selection.loc["topk-elements", "auroc"] == pytest.approx(0.25)
    assert by_selection.loc["all", "tpr_at_5fpr"] == pytest.approx(0.25)
    assert by_selection.loc["all", "fpr_at_5fpr"] == 0.0
    assert (summary["n_members"] == 4).all() and (summary["n_nonmembers"] == 4).all()
    assert (summary["auroc_lo"] <= summary["auroc"]).all() and (summary["auroc"] <= summary["auroc_hi"]).all()


def test_summarise_without_groups_gives_one_row():
    scores = pd.DataFrame({"label": HAND_LABELS, "score": HAND_SCORES})
    summary = summarise(scores, [], n_boot=100)
    assert len(summary) == 1 and summary.loc[0, "auroc"] == pytest.approx(0.75)


def test_summarise_names_missing_columns():
    with pytest.raises(ValueError, match="model"):
        summarise(pd.DataFrame({"label": [1], "score": [0.1]}), ["model"])


def test_member_ttest_matches_scipy():
    labels, values = separable_sample(50, seed=4)
    result = member_ttest(values, labels)
    expected = stats.ttest_ind(values[labels == 1], values[labels == 0], equal_var=False)
    assert result["t"] == pytest.approx(expected.statistic)
    assert result["p"] == pytest.approx(expected.pvalue)
    assert result["mean_members"] == pytest.approx(values[labels == 1].mean())
    assert result["mean_nonmembers"] == pytest.approx(values[labels == 0].mean())
    assert (result["n_members"], result["n_nonmembers"]) == (25, 25)


def test_budget_correlation_perfect_line_ignores_es():
    metrics = pd.DataFrame({"budget": ["5", "10", "20", "es"], "auroc": [0.6, 0.7, 0.9, 0.1]})
    result = budget_correlation(metrics)
    assert result["r"] == pytest.approx(1.0)
    assert result["n"] == 3


def test_budget_correlation_negative_line():
    metrics = pd.DataFrame({"budget": ["1", "2", "3", "4"], "auroc": [0.8, 0.7, 0.6, 0.5]})
    assert budget_correlation(metrics)["r"] == pytest.approx(-1.0)


def test_budget_correlation_needs_three_budgets():
    metrics = pd.DataFrame({"budget": ["5", "10", "es"], "auroc": [0.6, 0.7, 0.8]})
    result = budget_correlation(metrics)
    assert math.isnan(result["r"]) and math.isnan(result["p"])
    assert result["n"] == 2


def test_roc_points_span_the_square():
    points = roc_points(HAND_LABELS, HAND_SCORES)
    assert list(points.columns) == ["fpr", "tpr"]
    assert (points.iloc[0].tolist(), points.iloc[-1].tolist()) == ([0.0, 0.0], [1.0, 1.0])
    assert points["fpr"].is_monotonic_increasing and points["tpr"].is_monotonic_increasing


def test_roc_points_single_class_is_empty():
    assert roc_points([1, 1], [0.1, 0.2]).empty


def test_cross_validated_k_picks_the_informative_k():
    labels, informative = separable_sample(100, shift=3.0, seed=5)
    rng = np.random.default_rng(6)
    text_ids = [f"t{i:03d}" for i in range(100)]
    scores = pd.concat(
        [
            pd.DataFrame({"text_id": text_ids, "label": labels, "k": float(k), "score": values})
            for k, values in [(1, rng.normal(size=100)), (5, informative), (10, rng.normal(size=100))]
        ],
        ignore_index=True,
    )
    fold_aurocs, chosen = cross_validated_k(scores, n_folds=5)
    assert chosen == [5] * 5
    assert len(fold_aurocs) == 5 and all(a > 0.9 for a in fold_aurocs)
    assert np.mean(fold_aurocs) == pytest.approx(auroc(labels, informative), abs=0.05)


def test_cross_validated_k_scores_each_fold_with_its_own_k():
    # Two equally informative ks on scales 100 apart: folds choose one or the other. Pooling
    # the out-of-fold scores would rank one fold's texts above another's whatever their
    # label; the AUROC is taken per fold and averaged instead.
    rng = np.random.default_rng(3)
    labels = np.repeat([1, 0], 40)
    text_ids = [f"t{i:02d}" for i in range(80)]
    scores = pd.concat(
        [
            pd.DataFrame(
                {"text_id": text_ids, "label": labels, "k": k, "score": offset + rng.normal(size=80) + 1.5 * labels}
            )
            for k, offset in [(1.0, 100.0), (5.0, 0.0)]
        ],
        ignore_index=True,
    )
    fold_aurocs, chosen = cross_validated_k(scores, n_folds=5, seed=0)
    assert set(chosen) == {1, 5}  # the folds disagree
    table = topk_cv_table(
        scores.assign(dataset="d", model="m", budget="5", method="param-delta", selection="topk-elements"), n_boot=100
    )
    row = table.iloc[0]
    assert row["auroc_cv"] == pytest.approx(np.mean(fold_aurocs)) and row["auroc_cv"] > 0.75
    assert row["auroc_cv_lo"] < row["auroc_cv"] < row["auroc_cv_hi"]


def test_cross_validated_k_needs_as_many_texts_of_each_label_as_folds():
    scores = pd.DataFrame(
        {"text_id": [f"t{i}" for i in range(8)], "label": [1, 1, 1, 0, 0, 0, 0, 0], "k": 1.0, "score": np.arange(8.0)}
    )
    with pytest.raises(ValueError, match="3 texts of label 1: too few for 5 cross-validation folds"):
        cross_validated_k(scores, n_folds=5)


def test_cross_validated_k_rejects_missing_scores():
    scores = pd.DataFrame(
        {"text_id": ["a", "b", "a"], "label": [1, 0, 1], "k": [1.0, 1.0, 5.0], "score": [0.1, 0.2, 0.3]}
    )
    with pytest.raises(ValueError, match="every k"):
        cross_validated_k(scores, n_folds=2)


def test_topk_cv_table_reports_eval_and_cross_validated_k():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 30)
    rows = []
    for k, shift in [(1, 0.0), (5, 2.0), (20, 0.5)]:
        scores = rng.normal(size=60) + shift * labels
        rows += [
            {
                "dataset": "d",
                "model": "m",
                "budget": "5",
                "method": "param-delta",
                "selection": "topk-elements",
                "k": float(k),
                "text_id": f"t{i}",
                "label": int(labels[i]),
                "score": s,
            }
            for i, s in enumerate(scores)
        ]
    rows += [
        {
            "dataset": "d",
            "model": "m",
            "budget": "5",
            "method": "param-delta",
            "selection": "all",
            "k": np.nan,
            "text_id": f"t{i}",
            "label": int(labels[i]),
            "score": 0.0,
        }
        for i in range(60)
    ]
    table = topk_cv_table(pd.DataFrame(rows), n_boot=200)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["selection"] == "topk-elements" and row["k_eval"] == 5
    eval_auroc = auroc(labels, [r["score"] for r in rows if r["k"] == 5.0])
    assert row["auroc_eval"] == pytest.approx(eval_auroc)
    # K = 5 separates members best, so every fold picks it: the mean of the folds' AUROCs with
    # that K is close to (not equal to: per fold, not pooled) its AUROC over all texts.
    assert row["k_folds"] == "5,5,5,5,5"
    topk = pd.DataFrame(rows).query("selection == 'topk-elements'")
    assert row["auroc_cv"] == pytest.approx(np.mean(cross_validated_k(topk)[0]))
    assert row["auroc_cv"] == pytest.approx(eval_auroc, abs=0.03)
    assert row["auroc_cv_lo"] < row["auroc_cv"] < row["auroc_cv_hi"]


def test_ttest_table_normalised_and_raw():
    labels = [1, 1, 1, 0, 0, 0]
    scores = pd.DataFrame(
        {
            "dataset": "d",
            "model": "m",
            "budget": "5",
            "method": "param-delta",
            "selection": "all",
            "k": np.nan,
            "text_id": [f"t{i}" for i in range(6)],
            "label": labels,
            "score": [-0.1, -0.2, -0.15, -0.5, -0.6, -0.55],
        }
    )
    change = scores[["dataset", "model", "budget", "text_id", "label"]].assign(mean_l2=[1.0, 1.1, 0.9, 2.0, 2.2, 2.1])
    table = ttest_table(scores, change)
    row = table.iloc[0]
    assert row["mean_members"] == pytest.approx(0.15) and row["mean_nonmembers"] == pytest.approx(0.55)
    assert row["t"] < 0 and row["raw_t"] < 0
    assert row["raw_mean_members"] == pytest.approx(1.0) and row["raw_mean_nonmembers"] == pytest.approx(2.1)
    expected = stats.ttest_ind([1.0, 1.1, 0.9], [2.0, 2.2, 2.1], equal_var=False)
    assert row["raw_p"] == pytest.approx(expected.pvalue)


def test_correlation_in_the_thesis_form_averages_over_models_first():
    # Thesis 5.2.4: r between the budget and the AUROC averaged over the models, one point per
    # budget. Budget 40 lacks model b: it is left out, so every mean is over the same models.
    aurocs = {
        "a": {"5": 0.50, "10": 0.60, "20": 0.55, "30": 0.70, "40": 0.9},
        "b": {"5": 0.60, "10": 0.58, "20": 0.75, "30": 0.72},
    }
    metrics = pd.DataFrame(
        [
            {
                "dataset": "d",
                "model": model,
                "budget": budget,
                "method": "param-delta",
                "selection": "all",
                "k": np.nan,
                "auroc": value,
            }
            for model, per_budget in aurocs.items()
            for budget, value in per_budget.items()
        ]
    )
    table = correlation_table(metrics)
    mean = table[table["model"] == MEAN_OVER_MODELS]
    assert len(mean) == 1 and len(table) == 3
    expected = stats.pearsonr([5, 10, 20, 30], [0.55, 0.59, 0.65, 0.71])
    assert mean.iloc[0]["r"] == pytest.approx(expected.statistic)
    assert mean.iloc[0]["p"] == pytest.approx(expected.pvalue)
    assert mean.iloc[0]["n"] == 4
    # One model: its own row says it all.
    assert MEAN_OVER_MODELS not in set(correlation_table(metrics[metrics["model"] == "a"])["model"])


def test_every_training_setting_is_its_own_method_in_every_table():
    # Two training settings of the same (dataset, model, budget): `param-delta` (the train:
    # block) and `param-delta:sgd`. Each gets its own metrics, t-test, top-K and correlation
    # rows, and its own failed-text count; a baseline is none of them.
    rng = np.random.default_rng(1)
    labels = np.repeat([1, 0], 20)
    rows = []
    for method, shift in [("param-delta", 0.2), ("param-delta:sgd", 2.0)]:
        for budget in ("5", "10", "20"):
            for selection, k in [("all", np.nan), ("topk-elements", 1.0), ("topk-elements", 10.0)]:
                scores = rng.normal(size=labels.size) + shift * labels
                rows += [
                    dict(dataset="d", model="m", budget=budget, method=method, selection=selection, k=k,
                         text_id=f"t{i}", label=int(labels[i]), score=float(s))
                    for i, s in enumerate(scores)
                ]  # fmt: skip
    rows += [
        dict(dataset="d", model="m", budget="-", method="loss", selection=None, k=np.nan,
             text_id=f"t{i}", label=int(labels[i]), score=float(s))
        for i, s in enumerate(rng.normal(size=labels.size))
    ]  # fmt: skip
    scores = pd.DataFrame(rows)
    texts = pd.DataFrame(
        [
            dict(dataset="d", model="m", budget=budget, method=method, text_id=f"t{i}",
                 status="failed" if method == "param-delta:sgd" and i < 3 else "ok")
            for method in ("param-delta", "param-delta:sgd") for budget in ("5", "10", "20") for i in range(40)
        ]
    )  # fmt: skip
    table = metrics_table(scores, texts, n_boot=50)
    failed = table.groupby("method")["n_failed"].max()
    assert failed.to_dict() == {"loss": 0, "param-delta": 0, "param-delta:sgd": 3}
    all_layers = table[table["selection"] == "all"].groupby("method")["auroc"].mean()
    assert all_layers["param-delta:sgd"] > 0.85 > all_layers["param-delta"]
    assert table[["auroc_lo", "auroc_hi"]].notna().all().all()

    ttest = ttest_table(scores)
    assert sorted(ttest["method"].unique()) == ["param-delta", "param-delta:sgd"] and len(ttest) == 6
    topk = topk_cv_table(scores, n_boot=50)
    assert sorted(topk["method"].unique()) == ["param-delta", "param-delta:sgd"] and len(topk) == 6
    correlation = correlation_table(table)
    assert set(correlation["method"]) == {"param-delta", "param-delta:sgd"}
