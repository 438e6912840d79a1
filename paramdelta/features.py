"""Per-text membership scores from the per-layer parameter-delta table.

Each layer's delta norm (thesis eq. 4.2.4) is min-max normalised over the texts of one
(dataset, model, budget) table (eq. 4.2.6), so layers of very different size and
learning speed contribute on one scale. A text's score is the negative aggregate of its
normalised deltas over a selection of layers (the thesis does not print the aggregation;
the mean is this project's default): members were already learned and move the weights
less, so a higher score means more likely a member. The ``l2`` aggregation instead takes
one global L2 norm over all selected parameters, unnormalised.

Selections: every layer, one layer group (attention, mlp, norm, embedding), the K% of
entries per layer with the largest |delta| (``topk-elements``), or the K% of layers
with the largest mean normalised delta over all texts (``topk-layers``, chosen without
labels).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from paramdelta.config import PARAM_DELTA, defaults, is_param_delta, method_name  # noqa: F401 (re-exported)
from paramdelta.metrics import auroc_rows

SELECTIONS = ("all", "attention", "mlp", "norm", "embedding", "topk-elements", "topk-layers")
K_SELECTIONS = ("topk-elements", "topk-layers")
GROUP_SELECTIONS = ("attention", "mlp", "norm", "embedding")
AGGREGATIONS = ("mean", "sum", "l2")
AGGREGATE = defaults("features", "aggregate")  # config/schema.yaml's default
METHOD = PARAM_DELTA
SCORE_COLUMNS = ("text_id", "label", "method", "selection", "k", "score")


_TOPK_COLUMN = re.compile(r"^topk_l2_(\d+)$")


def _require_columns(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"delta table lacks columns {missing}")


def _check_choice(value: str, valid: Sequence[str], what: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {list(valid)}")


def topk_columns(table: pd.DataFrame) -> dict[int, str]:
    """The ``topk_l2_{K}`` columns of the table, keyed by K."""
    found = {}
    for column in table.columns:
        match = _TOPK_COLUMN.match(str(column))
        if match:
            found[int(match.group(1))] = column
    return dict(sorted(found.items()))


def normalise(table: pd.DataFrame) -> pd.DataFrame:
    """Copy of the table with per-layer min-max normalised ``l2_norm`` and ``topk_l2_{K}_norm``.

    A layer whose value is the same for every text normalises to 0.
    """
    _require_columns(table, ["text_id", "layer", "l2"])
    if table.duplicated(["text_id", "layer"]).any():
        raise ValueError(
            "delta table has more than one row per (text_id, layer); normalise one (dataset, model, budget) at a time"
        )
    raw_columns = ["l2", *topk_columns(table).values()]
    values = table[raw_columns].astype(float)
    by_layer = values.groupby(table["layer"], sort=False)
    low = by_layer.transform("min")
    span = by_layer.transform("max") - low
    normalised = ((values - low) / span.where(span > 0)).fillna(0.0).where(values.notna())
    normalised.columns = [f"{column}_norm" for column in raw_columns]
    result = table.copy()
    result[normalised.columns] = normalised
    return result


def _topk_column(table: pd.DataFrame, k: int) -> str:
    column = f"topk_l2_{k}"
    if column not in table.columns:
        raise ValueError(f"topk-elements with k={k} needs column {column!r}; available K: {list(topk_columns(table))}")
    return column


def _top_layers(table: pd.DataFrame, k: int) -> pd.Index:
    """The ceil(k% of layers), at least one, with the largest mean normalised l2 over all texts."""
    mean_delta = table.groupby("layer", sort=True)["l2_norm"].mean()
    n_selected = max(1, -(-k * len(mean_delta) // 100))
    # A stable sort keeps ties in layer-name order, so the choice is reproducible.
    return mean_delta.sort_values(ascending=False, kind="stable").index[:n_selected]


def _selected_rows(table: pd.DataFrame, selection: str, k: int | None) -> pd.Series:
    if selection in GROUP_SELECTIONS:
        rows = table["group"] == selection
        if not rows.any():
            raise ValueError(
                f"selection {selection!r} matches no layers; groups present: {sorted(table['group'].unique())}"
            )
        return rows
    if selection == "topk-layers":
        return table["layer"].isin(_top_layers(table, k))
    return pd.Series(True, index=table.index)


def select_score(table: pd.DataFrame, selection: str, k: int | None = None, aggregate: str = AGGREGATE) -> pd.Series:
    """Score per text (index text_id, name "score") for one layer selection and aggregation."""
    _check_choice(selection, SELECTIONS, "selection")
    _check_choice(aggregate, AGGREGATIONS, "aggregate")
    if selection in K_SELECTIONS:
        if k is None:
            raise ValueError(f"selection {selection!r} needs k (a percentage)")
        if not (0 < k <= 100 and k == int(k)):
            raise ValueError(f"k is an integer percentage in (0, 100], got {k}")
        # Score tables carry k as float; topk_l2_{K} column names use the integer.
        k = int(k)
    elif k is not None:
        raise ValueError(f"selection {selection!r} takes no k, got k={k}")
    uses_sq = aggregate == "l2" and selection != "topk-elements"
    _require_columns(table, ["text_id", "layer", "group", "l2", *(["sq"] if uses_sq else [])])

    value_column = _topk_column(table, k) if selection == "topk-elements" else "l2"
    needs_normalised = aggregate != "l2" or selection == "topk-layers"
    if needs_normalised and not {"l2_norm", f"{value_column}_norm"} <= set(table.columns):
        table = normalise(table)

    rows = _selected_rows(table, selection, k)
    if aggregate == "l2":
        squared = table[value_column] ** 2 if selection == "topk-elements" else table["sq"]
        aggregated = np.sqrt(squared[rows].groupby(table.loc[rows, "text_id"]).sum())
    else:
        normalised = table.loc[rows, f"{value_column}_norm"]
        aggregated = normalised.groupby(table.loc[rows, "text_id"]).agg(aggregate)
    return (-aggregated).rename("score").rename_axis("text_id")


DISTANCES = ("cosine", "relative", "mahalanobis", "pca", "random-projection")
PROJECTION_DIM = 8  # random-projection's directions (fewer when there are fewer layers)
PROJECTION_SEED = 0


def cosine_distance(table: pd.DataFrame) -> pd.Series:
    """Per-row 1 - cos(theta_before, theta_after) of the layer, from l2^2 (`sq`), <before, delta>
    (`dot`) and ||before||^2 (`base_sq`).

    Computed as sin^2 / (1 + cos), with sin^2 from the part of the delta orthogonal to the base
    weights: 1 - cos itself loses every digit to cancellation when the change is a millionth of
    the weights, as one text's is.
    """
    _require_columns(table, ["sq"])
    if not {"dot", "base_sq"} <= set(table.columns) or table[["dot", "base_sq"]].isna().any().any():
        raise ValueError(
            "cosine and relative need <base, delta> and ||base||^2 per layer, which this table lacks: "
            "its training stores were written before they were kept, or are delta stores read "
            "without the model's base snapshot (rerun the training jobs: snakemake --forcerun train)"
        )
    sq, dot, base_sq = (table[column].to_numpy(dtype=float) for column in ("sq", "dot", "base_sq"))
    after_sq = base_sq + 2 * dot + sq
    scale = np.sqrt(base_sq * after_sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (base_sq + dot) / scale
        sin_sq = np.maximum(base_sq * sq - dot**2, 0.0) / (base_sq * after_sq)
        distance = np.where(scale > 0, sin_sq / (1 + cos), 0.0)
    return pd.Series(distance, index=table.index, name="cosine")


def distance_scores(table: pd.DataFrame, distances: Sequence[str], *, method: str = METHOD) -> pd.DataFrame:
    """Label-free scores over all layers other than the mean of L2 norms (METHOD.md section 1,
    the thesis's future work), in the columns of score_table, the distance's name as selection.

    Per layer, then over all layers:
    - `cosine`: each layer's cosine distance between its weights before and after
      (cosine_distance), min-max normalised per layer like the L2 norm, then averaged. Unlike
      L2 it ignores the part of the change along the weights themselves, which weight decay
      makes the same for every text.
    - `relative`: the mean over layers of ||delta|| / ||theta_before||, unnormalised. (Min-max
      normalisation would undo the division by a per-layer constant, giving the `all` score
      again; the relative change is already on one scale across layers.)
    From the texts x layers matrix of raw per-layer L2 changes:
    - `mahalanobis`: sqrt(x^T S^-1 x), the distance of a text's changes from no change with S
      their covariance over all texts, shrunk by Ledoit-Wolf (layers outnumber texts on large
      models); it discounts layers that move together and layers whose change varies a lot.
    - `pca`: the changes standardised per layer and projected on their first principal
      component, its sign chosen so that its loadings sum to a positive number (the
      direction in which the layers move more).
    - `random-projection`: the min-max normalised changes projected on PROJECTION_DIM Gaussian
      directions (a fixed seed), and the length of the projection divided by sqrt(dim): by
      Johnson-Lindenstrauss about the L2 norm of the normalised changes, from far fewer
      numbers, which is what it costs a model with thousands of layers.
    All negated: members move less, so a higher score means more likely a member. None looks
    at a label, so none can tell which way a direction points for members: on the demo,
    principal components other than the first, or the first with the other sign, separate
    members far better (see the supervised classifiers).
    """
    for distance in distances:
        _check_choice(distance, DISTANCES, "distance")
    _require_columns(table, ["text_id", "layer", "l2"])
    labels = _text_labels(table)
    wide = table.pivot(index="text_id", columns="layer", values="l2").sort_index()
    values = wide.to_numpy(dtype=float)
    blocks = []
    for distance in distances:
        if distance == "cosine":
            per_layer = table.assign(l2=cosine_distance(table))[["text_id", "layer", "label", "l2"]]
            normalised = normalise(per_layer).pivot(index="text_id", columns="layer", values="l2_norm")
            score = -normalised.reindex(wide.index).mean(axis=1).to_numpy()
        elif distance == "relative":
            cosine_distance(table)  # the same check that the table has ||base||^2
            relative = table["l2"] / np.sqrt(table["base_sq"].where(table["base_sq"] > 0))
            score = -relative.groupby(table["text_id"]).mean().reindex(wide.index).to_numpy()
        elif distance == "mahalanobis":
            from sklearn.covariance import LedoitWolf  # scikit-learn where used, as in paramdelta.supervised

            precision = LedoitWolf().fit(values).precision_
            score = -np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", values, precision, values), 0.0))
        elif distance == "pca":
            spread = values.std(axis=0)
            standard = (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
            first = np.linalg.svd(standard, full_matrices=False)[2][0]
            score = -(standard @ (first * (1.0 if first.sum() >= 0 else -1.0)))
        else:
            low, span = values.min(axis=0), np.ptp(values, axis=0)
            normalised = (values - low) / np.where(span > 0, span, 1.0)
            dim = min(PROJECTION_DIM, values.shape[1])
            directions = np.random.default_rng(PROJECTION_SEED).standard_normal((values.shape[1], dim))
            score = -np.linalg.norm(normalised @ directions, axis=1) / np.sqrt(dim)
        blocks.append(
            pd.DataFrame(
                {
                    "text_id": wide.index,
                    "label": labels.reindex(wide.index).to_numpy(),
                    "method": method,
                    "selection": distance,
                    "k": np.nan,
                    "score": score,
                }
            )
        )
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame({c: [] for c in SCORE_COLUMNS})


TRAJECTORY_FEATURES = ("area", "slope", "peak")


def trajectory_table(trajectory: pd.DataFrame) -> pd.DataFrame:
    """Per (text, layer) features of its change after each epoch (deltas.read_trajectory), with
    the change before the first epoch taken as 0:

    - `area`: the mean change over the epochs run (the area under the curve, per epoch);
    - `slope`: the least-squares slope of the change against the epoch;
    - `peak`: the epoch whose steps grew the change most, as a fraction of the epochs run.

    Columns: text_id, label, layer, group, area, slope, peak.
    """
    _require_columns(trajectory, ["text_id", "label", "layer", "group", "epoch", "l2"])
    ordered = trajectory.sort_values(["text_id", "layer", "epoch"], kind="stable")
    by = ordered.groupby(["text_id", "layer"], sort=False)
    epoch = ordered["epoch"].astype(float)
    centred = epoch - by["epoch"].transform("mean")
    growth = ordered["l2"] - by["l2"].shift(fill_value=0.0)
    frame = ordered.assign(
        xy=centred * ordered["l2"], xx=centred**2, growth=growth, epochs=by["epoch"].transform("max")
    )
    grouped = frame.groupby(["text_id", "layer"], sort=False)
    peak_rows = grouped["growth"].idxmax()
    result = grouped.agg(label=("label", "first"), group=("group", "first"), area=("l2", "mean"))
    xx = grouped["xx"].sum()
    result["slope"] = (grouped["xy"].sum() / xx.where(xx > 0)).fillna(0.0)
    result["peak"] = (frame.loc[peak_rows, "epoch"] / frame.loc[peak_rows, "epochs"]).to_numpy()
    return result.reset_index()


def trajectory_scores(trajectory: pd.DataFrame, which: Sequence[str], *, method: str = METHOD) -> pd.DataFrame:
    """Label-free scores from the per-epoch trajectory, in the columns of score_table, selection
    `trajectory-<feature>`: each feature of trajectory_table min-max normalised per layer over the
    texts, averaged over all layers and negated (a text that moves its layers more, faster or
    later scores lower: members move less). Empty when no trajectory was recorded."""
    for feature in which:
        _check_choice(feature, TRAJECTORY_FEATURES, "trajectory feature")
    if trajectory.empty or not which:
        return pd.DataFrame({column: [] for column in SCORE_COLUMNS})
    features = trajectory_table(trajectory)
    blocks = []
    for feature in which:
        per_layer = features[["text_id", "label", "layer", feature]].rename(columns={feature: "l2"})
        score = -normalise(per_layer).groupby("text_id", sort=True)["l2_norm"].mean()
        labels = features.drop_duplicates("text_id").set_index("text_id")["label"]
        blocks.append(
            pd.DataFrame(
                {
                    "text_id": score.index,
                    "label": labels.reindex(score.index).to_numpy(),
                    "method": method,
                    "selection": f"trajectory-{feature}",
                    "k": np.nan,
                    "score": score.to_numpy(),
                }
            )
        )
    return pd.concat(blocks, ignore_index=True)


def trajectory_curve(trajectory: pd.DataFrame) -> pd.DataFrame:
    """Mean change of each layer after each epoch over the members and over the non-members: the
    curves the report draws. Columns: layer, layer_index, group, epoch, label, l2, n (texts)."""
    columns = ["layer", "layer_index", "group", "epoch", "label", "l2", "n"]
    if trajectory.empty:
        return pd.DataFrame({column: [] for column in columns})
    grouped = trajectory.groupby(["layer", "layer_index", "group", "epoch", "label"], sort=True)["l2"]
    curve = grouped.agg(l2="mean", n="count").reset_index()
    return curve.sort_values(["label", "layer_index", "epoch"], kind="stable").reset_index(drop=True)[columns]


def epoch_scores(trajectory: pd.DataFrame, budgets: Sequence[str], *, method: str = METHOD) -> pd.DataFrame:
    """The `all` score of every text after epoch b of its run, for each b of `budgets`, with a
    `budget` column: what runs of b epochs would have scored, where config.trajectory_budgets
    says their states are the same. A text whose run ended (early) before epoch b is missing
    from that budget."""
    blocks = []
    for budget in budgets if not trajectory.empty else []:
        at = trajectory[trajectory["epoch"] == int(budget)]
        if at.empty:
            continue
        scores = score_table(at.drop(columns="epoch"), ["all"], [], method=method)
        blocks.append(scores.assign(budget=str(budget)))
    if not blocks:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in (*SCORE_COLUMNS, "budget")})
    return pd.concat(blocks, ignore_index=True)


def _text_labels(table: pd.DataFrame) -> pd.Series:
    _require_columns(table, ["text_id", "label"])
    labels = table[["text_id", "label"]].drop_duplicates()
    if labels["text_id"].duplicated().any():
        raise ValueError("a text_id carries more than one label in the delta table")
    return labels.set_index("text_id")["label"]


def score_table(
    table: pd.DataFrame,
    selections: Sequence[str],
    ks: Sequence[int],
    aggregate: str = AGGREGATE,
    *,
    method: str = METHOD,
) -> pd.DataFrame:
    """Long per-text scores: one block per non-K selection and per (K selection, k in ks).

    Columns: text_id, label, method (`method`, see method_name), selection, k (NaN for
    selections without K), score.
    """
    for selection in selections:
        _check_choice(selection, SELECTIONS, "selection")
    if any(selection in K_SELECTIONS for selection in selections) and not ks:
        raise ValueError(f"selections {list(K_SELECTIONS)} need at least one k")
    labels = _text_labels(table)
    normalised = [f"{column}_norm" for column in ["l2", *topk_columns(table).values()]]
    if not set(normalised) <= set(table.columns):
        table = normalise(table)

    blocks = []
    for selection in selections:
        for k in ks if selection in K_SELECTIONS else [None]:
            scores = select_score(table, selection, k, aggregate)
            blocks.append(
                pd.DataFrame(
                    {
                        "text_id": scores.index,
                        "label": labels.reindex(scores.index).to_numpy(),
                        "method": method,
                        "selection": selection,
                        "k": np.nan if k is None else float(k),
                        "score": scores.to_numpy(),
                    }
                )
            )
    if not blocks:
        return pd.DataFrame({column: [] for column in SCORE_COLUMNS})
    return pd.concat(blocks, ignore_index=True)


def layer_aurocs(table: pd.DataFrame) -> pd.DataFrame:
    """AUROC of each layer's negative normalised l2 on its own, one row per layer.

    Columns: layer, layer_index, group, block, auroc; ordered by layer_index.
    """
    _require_columns(table, ["text_id", "label", "layer", "layer_index", "group", "block", "l2"])
    labels = _text_labels(table)
    if "l2_norm" not in table.columns:
        table = normalise(table)
    by_layer = table.pivot(index="layer", columns="text_id", values="l2_norm")
    aurocs = auroc_rows(labels.reindex(by_layer.columns).to_numpy(), -by_layer.to_numpy())
    layers = table.drop_duplicates("layer").set_index("layer")[["layer_index", "group", "block"]]
    result = layers.join(pd.Series(aurocs, index=by_layer.index, name="auroc")).reset_index()
    return result.sort_values("layer_index", kind="stable").reset_index(drop=True)


def text_change(table: pd.DataFrame) -> pd.DataFrame:
    """How much each text moved the whole model, raw and normalised.

    Columns: text_id, label, l2_total (one L2 norm over every parameter), mean_l2 (mean of
    the raw layer norms), mean_norm (mean of the min-max normalised layer norms: minus the
    `all` score).
    """
    _require_columns(table, ["text_id", "label", "l2", "sq"])
    if "l2_norm" not in table.columns:
        table = normalise(table)
    grouped = table.groupby("text_id", sort=True)
    result = pd.DataFrame(
        {
            "l2_total": np.sqrt(grouped["sq"].sum()),
            "mean_l2": grouped["l2"].mean(),
            "mean_norm": grouped["l2_norm"].mean(),
        }
    )
    result.insert(0, "label", _text_labels(table).reindex(result.index))
    return result.reset_index()
