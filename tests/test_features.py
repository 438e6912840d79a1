import math

import numpy as np
import pandas as pd
import pytest

from paramdelta import features
from paramdelta.features import (
    AGGREGATIONS,
    K_SELECTIONS,
    SELECTIONS,
    layer_aurocs,
    normalise,
    score_table,
    select_score,
    text_change,
)
from paramdelta.metrics import auroc

GROUP_OF_LAYER = {"L0": "attention", "L1": "mlp", "L2": "norm", "L3": "embedding", "L4": "other"}


def delta_table(l2_by_layer, labels, topk_by_layer=None, groups=None):
    """Delta table from {layer: [l2 per text]} (texts t0, t1, ...), optionally {K: {layer: [...]}}."""
    groups = groups or GROUP_OF_LAYER
    text_ids = [f"t{i}" for i in range(len(labels))]
    rows = []
    for layer_index, (layer, values) in enumerate(l2_by_layer.items()):
        for text_index, (text_id, value) in enumerate(zip(text_ids, values)):
            row = {
                "dataset": "d",
                "model": "m",
                "budget": "5",
                "text_id": text_id,
                "label": labels[text_index],
                "layer": layer,
                "layer_index": layer_index,
                "group": groups[layer],
                "block": layer_index,
                "numel": 10,
                "l2": float(value),
                "sq": float(value) ** 2,
            }
            for k, topk_values in (topk_by_layer or {}).items():
                row[f"topk_l2_{k}"] = float(topk_values[layer][text_index])
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def hand_table():
    return delta_table(
        {"L0": [1, 2, 3], "L1": [4, 4, 4]},
        labels=[1, 0, 0],
        topk_by_layer={5: {"L0": [0.5, 1.0, 1.5], "L1": [1, 3, 2]}},
    )


def scores_of(series):
    return series.sort_index().tolist()


def test_normalise_hand_example(hand_table):
    normalised = normalise(hand_table).set_index(["layer", "text_id"])
    assert normalised.loc["L0", "l2_norm"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert normalised.loc["L1", "l2_norm"].tolist() == [0.0, 0.0, 0.0]  # constant layer
    assert normalised.loc["L0", "topk_l2_5_norm"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert normalised.loc["L1", "topk_l2_5_norm"].tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert "l2_norm" not in hand_table.columns


def test_normalise_rejects_mixed_tables(hand_table):
    with pytest.raises(ValueError, match="one row per"):
        normalise(pd.concat([hand_table, hand_table.assign(budget="10")]))


@pytest.mark.parametrize(
    ("selection", "k", "aggregate", "expected"),
    [
        ("all", None, "mean", [0.0, -0.25, -0.5]),
        ("all", None, "sum", [0.0, -0.5, -1.0]),
        ("attention", None, "mean", [0.0, -0.5, -1.0]),
        ("mlp", None, "sum", [0.0, 0.0, 0.0]),
        ("topk-elements", 5, "mean", [0.0, -0.75, -0.75]),
        ("topk-elements", 5, "sum", [0.0, -1.5, -1.5]),
    ],
)
def test_select_score_hand_example(hand_table, selection, k, aggregate, expected):
    scores = select_score(hand_table, selection, k, aggregate)
    assert scores.name == "score" and scores.index.name == "text_id"
    assert scores_of(scores) == pytest.approx(expected)


def test_select_score_normalises_only_once_needed(hand_table):
    assert scores_of(select_score(normalise(hand_table), "all")) == scores_of(select_score(hand_table, "all"))


def test_aggregate_l2_is_global_and_unnormalised():
    table = delta_table(
        {"L0": [1, 0], "L1": [2, 0], "L2": [2, 1]},
        labels=[0, 1],
        topk_by_layer={5: {"L0": [0.3, 0], "L1": [0.4, 0], "L2": [1.2, 0]}},
        groups={"L0": "attention", "L1": "attention", "L2": "mlp"},
    )
    assert scores_of(select_score(table, "all", aggregate="l2")) == pytest.approx([-3.0, -1.0])
    assert scores_of(select_score(table, "attention", aggregate="l2")) == pytest.approx([-math.sqrt(5), 0.0])
    assert scores_of(select_score(table, "topk-elements", 5, aggregate="l2")) == pytest.approx([-1.3, 0.0])


def topk_layers_table():
    # Normalised means over texts: L0 1/3, L1 2/3, L2 1/2, L3 0 (largest raw delta, smallest normalised).
    return delta_table(
        {"L0": [0, 0, 1], "L1": [0, 1, 1], "L2": [0, 1, 2], "L3": [5, 5, 5]},
        labels=[1, 0, 0],
        groups=dict.fromkeys(["L0", "L1", "L2", "L3"], "mlp"),
    )


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, [0.0, -1.0, -1.0]),  # ceil(0.04) -> at least one layer: L1
        (25, [0.0, -1.0, -1.0]),  # one layer: L1
        (50, [0.0, -0.75, -1.0]),  # L1 and L2
        (100, [0.0, -0.375, -0.75]),  # every layer
    ],
)
def test_topk_layers_picks_largest_mean_normalised_delta(k, expected):
    assert scores_of(select_score(topk_layers_table(), "topk-layers", k)) == pytest.approx(expected)


def test_topk_layers_l2_uses_raw_squares_of_the_chosen_layers():
    # k=50 chooses L1 and L2: text t2 has sq 1 + 4.
    scores = select_score(topk_layers_table(), "topk-layers", 50, aggregate="l2")
    assert scores_of(scores) == pytest.approx([0.0, -math.sqrt(2), -math.sqrt(5)])


def separable_table(n_texts=20, seed=0):
    """Every layer and every top-K value is smaller for members than for non-members."""
    rng = np.random.default_rng(seed)
    labels = [1] * (n_texts // 2) + [0] * (n_texts - n_texts // 2)
    offsets = np.where(np.array(labels) == 1, 0.0, 2.0)

    def values():
        return {layer: rng.random(n_texts) + offsets for layer in GROUP_OF_LAYER}

    return delta_table(values(), labels, topk_by_layer={1: values(), 5: values()})


@pytest.mark.parametrize("aggregate", AGGREGATIONS)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_members_with_smaller_deltas_score_higher(selection, aggregate):
    table = separable_table()
    labels = table.drop_duplicates("text_id").set_index("text_id")["label"]
    for k in [1, 5] if selection in K_SELECTIONS else [None]:
        scores = select_score(table, selection, k, aggregate)
        assert auroc(labels.reindex(scores.index), scores) == 1.0


def test_score_table_blocks_and_columns():
    table = separable_table(n_texts=10)
    scores = score_table(table, ["all", "topk-elements", "mlp", "topk-layers"], ks=[1, 5])
    assert list(scores.columns) == ["text_id", "label", "method", "selection", "k", "score"]
    assert len(scores) == 6 * 10
    assert (scores["method"] == "param-delta").all()
    blocks = scores.groupby(["selection", "k"], dropna=False, sort=False).size().reset_index(name="n")
    assert [f"{selection} {k}" for selection, k in zip(blocks["selection"], blocks["k"])] == [
        "all nan",
        "topk-elements 1.0",
        "topk-elements 5.0",
        "mlp nan",
        "topk-layers 1.0",
        "topk-layers 5.0",
    ]
    assert (blocks["n"] == 10).all()
    assert scores["k"].dtype == float
    members = scores.loc[scores["label"] == 1, "text_id"].unique()
    assert sorted(members) == [f"t{i}" for i in range(5)]


def test_score_table_needs_ks_for_k_selections():
    with pytest.raises(ValueError, match="at least one k"):
        score_table(separable_table(), ["topk-layers"], ks=[])


def test_group_selection_without_layers_names_groups(hand_table):
    with pytest.raises(ValueError, match=r"'norm'.*\['attention', 'mlp'\]"):
        select_score(hand_table, "norm")


def test_missing_columns_are_named(hand_table):
    with pytest.raises(ValueError, match=r"\['group'\]"):
        select_score(hand_table.drop(columns="group"), "all")
    with pytest.raises(ValueError, match=r"\['sq'\]"):
        select_score(hand_table.drop(columns="sq"), "all", aggregate="l2")


def test_unknown_selection_and_aggregate_list_valid_ones(hand_table):
    with pytest.raises(ValueError, match="topk-layers"):
        select_score(hand_table, "heads")
    with pytest.raises(ValueError, match="'mean', 'sum', 'l2'"):
        select_score(hand_table, "all", aggregate="max")


def test_k_validation(hand_table):
    with pytest.raises(ValueError, match="needs k"):
        select_score(hand_table, "topk-layers")
    with pytest.raises(ValueError, match="topk_l2_10"):
        select_score(hand_table, "topk-elements", 10)
    with pytest.raises(ValueError, match="takes no k"):
        select_score(hand_table, "all", 5)
    with pytest.raises(ValueError, match="percentage"):
        select_score(hand_table, "topk-layers", 0)
    with pytest.raises(ValueError, match="percentage"):
        select_score(hand_table, "topk-layers", 2.5)


def test_float_k_from_a_score_table_is_accepted(hand_table):
    assert scores_of(select_score(hand_table, "topk-elements", 5.0)) == scores_of(
        select_score(hand_table, "topk-elements", 5)
    )


def test_layer_aurocs_hand_example():
    table = delta_table(
        {"L0": [1, 2, 3, 4], "L1": [4, 3, 2, 1], "L2": [7, 7, 7, 7]},
        labels=[1, 1, 0, 0],
        groups={"L0": "attention", "L1": "mlp", "L2": "norm"},
    )
    result = layer_aurocs(table)
    assert list(result.columns) == ["layer", "layer_index", "group", "block", "auroc"]
    assert result["layer"].tolist() == ["L0", "L1", "L2"]
    assert result["group"].tolist() == ["attention", "mlp", "norm"]
    assert result["auroc"].tolist() == pytest.approx([1.0, 0.0, 0.5])


def test_scoring_a_large_table_gives_every_row():
    n_texts, n_layers, ks = 1000, 300, [1, 2, 5, 10, 20, 30, 40, 50]
    rng = np.random.default_rng(0)
    n_rows = n_texts * n_layers
    layer_index = np.tile(np.arange(n_layers), n_texts)
    groups = np.array(["attention", "mlp", "norm", "embedding", "other"])
    l2 = rng.random(n_rows)
    table = pd.DataFrame(
        {
            "dataset": "d",
            "model": "m",
            "budget": "5",
            "text_id": np.repeat([f"text{i:04d}" for i in range(n_texts)], n_layers),
            "label": np.repeat(rng.integers(0, 2, n_texts), n_layers),
            "layer": np.array([f"layer{i:03d}" for i in range(n_layers)])[layer_index],
            "layer_index": layer_index,
            "group": groups[layer_index % len(groups)],
            "block": layer_index // len(groups),
            "numel": 1000,
            "l2": l2,
            "sq": l2**2,
            **{f"topk_l2_{k}": l2 * k / 100 for k in ks},
        }
    )
    scores = score_table(table, SELECTIONS, ks)
    layer_aurocs(table)
    assert len(scores) == n_texts * (len(SELECTIONS) - len(K_SELECTIONS) + len(K_SELECTIONS) * len(ks))


def test_text_change_hand_example(hand_table):
    # Layers L0 = [1, 2, 3] and L1 = [4, 4, 4]: L0 normalises to [0, 0.5, 1], L1 (constant) to 0.
    change = text_change(hand_table).set_index("text_id")
    assert change["l2_total"].tolist() == pytest.approx([math.sqrt(17), math.sqrt(20), 5.0])
    assert change["mean_l2"].tolist() == pytest.approx([2.5, 3.0, 3.5])
    assert change["mean_norm"].tolist() == pytest.approx([0.0, 0.25, 0.5])
    assert change["label"].tolist() == [1, 0, 0]
    assert (change["mean_norm"] == -select_score(hand_table, "all").reindex(change.index)).all()


# Distances over all layers other than the mean of L2 norms (features.distances).


def layer_table(n_texts=80, seed=0):
    """Three layers; members move every layer less. Layer `noisy` varies 20 times more from text
    to text than the others, and carries the member shift only in proportion."""
    rng = np.random.default_rng(seed)
    rows = []
    for text in range(n_texts):
        label = text % 2
        for layer, scale in (("a", 1.0), ("b", 1.0), ("noisy", 20.0)):
            l2 = 10.0 * scale + scale * (rng.normal() - 1.0 * label)
            # Weights of norm 100 x scale; the change half along them, half across.
            base_sq, dot = (100.0 * scale) ** 2, -(l2**2) / 2
            rows.append(
                dict(
                    text_id=f"t{text:03d}",
                    label=label,
                    layer=layer,
                    group="mlp",
                    l2=l2,
                    sq=l2**2,
                    dot=dot,
                    base_sq=base_sq,
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("distance", features.DISTANCES)
def test_distances_score_members_higher_when_they_move_less(distance):
    table = layer_table()
    scores = features.distance_scores(table, [distance], method="param-delta:sgd")
    assert (scores["selection"] == distance).all() and (scores["method"] == "param-delta:sgd").all()
    assert scores["k"].isna().all() and len(scores) == 80
    assert auroc(scores["label"], scores["score"]) > 0.7


def test_pca_points_where_the_layers_move_more_whatever_the_svd_sign():
    table = layer_table()
    scores = features.distance_scores(table, ["pca"])
    wide = table.pivot(index="text_id", columns="layer", values="l2")
    overall = ((wide - wide.mean()) / wide.std()).sum(axis=1).reindex(scores["text_id"])
    # Minus the projection: texts that move every (standardised) layer more score lower.
    assert np.corrcoef(scores["score"], overall)[0, 1] < -0.9


def test_an_unknown_distance_is_an_error():
    with pytest.raises(ValueError, match="unknown distance 'euclid'"):
        features.distance_scores(layer_table(), ["euclid"])


def one_layer_row(before: np.ndarray, after: np.ndarray) -> pd.DataFrame:
    delta = after - before
    return pd.DataFrame({"sq": [delta @ delta], "dot": [before @ delta], "base_sq": [before @ before]})


def test_cosine_distance_is_one_minus_the_cosine_of_before_and_after():
    rng = np.random.default_rng(0)
    before = rng.normal(size=50)
    after = before + rng.normal(size=50)
    cos = before @ after / np.linalg.norm(before) / np.linalg.norm(after)
    assert features.cosine_distance(one_layer_row(before, after))[0] == pytest.approx(1 - cos, rel=1e-12)


def test_cosine_distance_keeps_its_digits_for_a_change_a_millionth_of_the_weights():
    before = np.array([1.0, 0.0, 0.0])
    epsilon = 1e-6
    # Across the weights: 1 - cos = 1 - 1 / sqrt(1 + eps^2), about eps^2 / 2, where 1 - cos in
    # float64 would be 0 or noise.
    across = features.cosine_distance(one_layer_row(before, np.array([1.0, epsilon, 0.0])))[0]
    assert across == pytest.approx(epsilon**2 / 2, rel=1e-6)
    # Along the weights (weight decay's shrinking): no angle at all.
    assert features.cosine_distance(one_layer_row(before, before * (1 - 1e-3)))[0] == pytest.approx(0.0, abs=1e-30)


def test_relative_change_divides_each_layer_by_its_weights():
    table = layer_table(n_texts=4)
    scores = features.distance_scores(table, ["relative"]).set_index("text_id")["score"]
    expected = -(table["l2"] / np.sqrt(table["base_sq"])).groupby(table["text_id"]).mean()
    pd.testing.assert_series_equal(scores, expected.rename("score"), check_index_type=False)


@pytest.mark.parametrize("distance", ["cosine", "relative"])
def test_cosine_and_relative_say_what_a_table_without_base_statistics_lacks(distance):
    table = layer_table(n_texts=4).assign(dot=np.nan)
    with pytest.raises(ValueError, match="rerun the training jobs"):
        features.distance_scores(table, [distance])


# The per-epoch trajectory (snapshots.trajectory, features.trajectory).


def trajectory_rows(curves: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    """Long trajectory rows from {(text, label): [change after epoch 1, 2, ...]} of one layer `a`
    and a layer `b` that changes twice as much."""
    rows = []
    for (text, label), curve in curves.items():
        for layer, scale in (("a", 1.0), ("b", 2.0)):
            for epoch, l2 in enumerate(curve, start=1):
                rows.append(dict(text_id=text, label=label, layer=layer, group="mlp", epoch=epoch, l2=scale * l2))
    return pd.DataFrame(rows)


def test_trajectory_features_by_hand():
    table = features.trajectory_table(trajectory_rows({("t", 1): [1.0, 3.0, 4.0, 4.5]})).set_index("layer")
    assert table.at["a", "area"] == pytest.approx(12.5 / 4)
    # Least squares of (1, 1), (2, 3), (3, 4), (4, 4.5): slope 1.15.
    assert table.at["a", "slope"] == pytest.approx(1.15)
    # Growth 1, 2, 1, 0.5: the second of four epochs.
    assert table.at["a", "peak"] == pytest.approx(0.5)
    assert table.at["b", "area"] == pytest.approx(2 * 12.5 / 4)


def test_trajectory_scores_rank_texts_that_move_less_higher():
    curves = {(f"m{i}", 1): [0.5 * e + 0.01 * i for e in range(1, 6)] for i in range(4)}
    curves |= {(f"n{i}", 0): [1.0 * e + 0.01 * i for e in range(1, 6)] for i in range(4)}
    scores = features.trajectory_scores(trajectory_rows(curves), ["area", "slope"], method="param-delta:x")
    assert set(scores["selection"]) == {"trajectory-area", "trajectory-slope"}
    assert (scores["method"] == "param-delta:x").all() and scores["k"].isna().all()
    for _, rows in scores.groupby("selection"):
        assert auroc(rows["label"], rows["score"]) == 1.0
    assert features.trajectory_scores(trajectory_rows(curves).iloc[0:0], ["area"]).empty


def test_epoch_scores_are_the_all_score_after_each_epoch():
    curves = {("m", 1): [1.0, 2.0, 3.0], ("n", 0): [2.0, 3.0, 3.5], ("o", 0): [0.5, 5.0, 6.0]}
    trajectory = trajectory_rows(curves)
    scores = features.epoch_scores(trajectory, ["1", "3", "9"], method="param-delta:constant")
    assert sorted(scores["budget"].unique()) == ["1", "3"]  # no run reached epoch 9
    at_three = trajectory[trajectory["epoch"] == 3].drop(columns="epoch")
    expected = select_score(at_three, "all")
    got = scores[scores["budget"] == "3"].set_index("text_id")["score"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert (scores["selection"] == "all").all()
