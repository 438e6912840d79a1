"""Per-layer parameter change: from before/after parameters to the delta table.

A layer is a leaf module that owns parameters, weight and bias together
(paramdelta.models.model_layers). For each (text, layer) the table holds
||theta_after - theta_before||_2 (thesis eq. 4.2.4), its square, and for every
configured K the L2 norm of only the K% largest |delta| entries (top-K%
elements). The same statistics are what a `sketch` store keeps, so the
training job and this reduction share one function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from paramdelta.models import Layer

STAT_ARRAYS = ("layer_l2", "layer_sq", "layer_topk_l2", "tensor_l2")


def topk_counts(numel: int, ks: Sequence[int]) -> list[int]:
    """Number of entries in the top K% of a layer: at least one."""
    return [max(1, math.ceil(numel * k / 100)) for k in ks]


def layer_stats(
    layers: Sequence[Layer],
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    ks: Sequence[int],
    *,
    is_delta: bool = False,
) -> dict[str, np.ndarray]:
    """Statistics of after - before per layer (or of `after` itself when it already is the delta).

    Returns float64 arrays: layer_l2 and layer_sq [n_layers], layer_topk_l2
    [n_layers, len(ks)], tensor_l2 [n_tensors in layer order].
    """
    layer_sq = np.zeros(len(layers))
    topk = np.zeros((len(layers), len(ks)))
    tensor_l2 = []
    for i, layer in enumerate(layers):
        pieces = []
        for name in layer.params:
            delta = after[name].to(torch.float32)
            if not is_delta:
                delta = delta - before[name].to(delta.device, torch.float32)
            delta = delta.flatten()
            tensor_l2.append(torch.linalg.vector_norm(delta, dtype=torch.float64).item())
            pieces.append(delta)
        flat = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        # Only the largest half (or whatever the largest K asks) is ever needed: topk, not a full sort.
        counts = topk_counts(flat.numel(), ks)
        largest = torch.topk(flat.abs(), max(counts), sorted=True).values if counts else flat[:0]
        cumulative = torch.cumsum(largest.to(torch.float64).square(), 0)
        topk[i] = [math.sqrt(cumulative[n - 1].item()) for n in counts]
        layer_sq[i] = torch.sum(flat.to(torch.float64).square()).item()
    return {
        "layer_l2": np.sqrt(layer_sq),
        "layer_sq": layer_sq,
        "layer_topk_l2": topk,
        "tensor_l2": np.asarray(tensor_l2, dtype=np.float64),
    }


def layer_frame(layers: Sequence[Layer]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "layer": [layer.name for layer in layers],
            "layer_index": [layer.index for layer in layers],
            "group": [layer.group for layer in layers],
            "block": [layer.block for layer in layers],
            "numel": [layer.numel for layer in layers],
        }
    )


def table_rows(layers: pd.DataFrame, stats: Mapping[str, np.ndarray], ks: Sequence[int], **keys) -> pd.DataFrame:
    """Delta-table rows of one text: the layer columns, its statistics and the identifying keys."""
    rows = layers.copy()
    for key, value in keys.items():
        rows.insert(0, key, value)
    rows["l2"] = stats["layer_l2"]
    rows["sq"] = stats["layer_sq"]
    for j, k in enumerate(ks):
        rows[f"topk_l2_{k}"] = stats["layer_topk_l2"][:, j]
    return rows


TEXT_COLUMNS = [
    "dataset", "model", "budget", "text_id", "label", "status", "failure", "failed_epoch", "n_tokens", "n_chunks",
    "epochs_run", "best_epoch", "final_loss", "seconds", "losses",
]


def read_job_store(path, labels: Mapping[str, int], ks: Sequence[int], base=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delta-table rows and per-text records of one training job's store.

    `base` (the model's base snapshot group) is needed only for `full` stores.
    Failed texts have a record and no delta rows.
    """
    from paramdelta import store
    from paramdelta.models import Layer

    root = store.open_store(path)
    attrs = root.attrs.asdict()
    policy = attrs["policy"]
    stored_ks = list(attrs["ks"])
    missing = sorted(set(ks) - set(stored_ks)) if policy == "sketch" else []
    if missing:
        raise ValueError(f"{path}: sketch store holds top-K% for K in {stored_ks}, not K = {missing} that features.k asks for (rerun the training jobs)")
    if policy == "full" and base is None:
        raise ValueError(f"{path}: a full store holds after-states only; the model's base snapshot is needed to take deltas")
    layers = [
        Layer(index=i, name=l["name"], group=l["group"], block=l["block"], params=tuple(l["params"]), numel=l["numel"])
        for i, l in enumerate(attrs["layers"])
    ]
    frame = layer_frame(layers)
    keys = {"budget": attrs["budget"], "model": attrs["model"], "dataset": attrs["dataset"]}
    rows, records = [], []
    for text_id in attrs["texts"]:
        group = root[f"texts/{text_id}"]
        text_attrs = group.attrs.asdict()
        losses = store.read_arrays(group, ["loss"])["loss"]
        records.append({**text_attrs, **keys, "label": labels[text_id], "losses": losses.tolist()})
        if text_attrs["status"] != "ok":
            continue
        if policy == "sketch":
            stats = store.read_arrays(group, STAT_ARRAYS)
            stats["layer_topk_l2"] = stats["layer_topk_l2"][:, [stored_ks.index(k) for k in ks]]
        else:
            stats = _stats_from_tensors(layers, group["params"], base, ks, is_delta=policy == "delta")
        rows.append(table_rows(frame, stats, ks, text_id=text_id, label=labels[text_id], **keys))
    texts = pd.DataFrame.from_records(records, columns=TEXT_COLUMNS)
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return table, texts


def _stats_from_tensors(layers, params_group, base, ks, *, is_delta: bool) -> dict[str, np.ndarray]:
    """Layer statistics of a full or delta store, reading one layer's tensors at a time."""
    from paramdelta import store

    parts = {name: [] for name in STAT_ARRAYS}
    for layer in layers:
        after = store.read_tensors(params_group, layer.params)
        before = None if is_delta else store.read_tensors(base, layer.params)
        one = layer_stats([layer], before, after, ks, is_delta=is_delta)
        for name in STAT_ARRAYS:
            parts[name].append(one[name])
    return {name: np.concatenate(values) for name, values in parts.items()}
