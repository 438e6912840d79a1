"""Per-layer parameter change: from before/after parameters to the delta table.

A layer is a leaf module that owns parameters, weight and bias together
(paramdelta.models.model_layers). For each (text, layer) the table holds
||theta_after - theta_before||_2 (thesis eq. 4.2.4), its square, for every
configured K the L2 norm of only the K% largest |delta| entries (top-K%
elements), and <theta_before, delta> and ||theta_before||^2, from which the
cosine distance and the relative change follow (paramdelta.features). The same
statistics are what a `sketch` store keeps, so the training job and this
reduction share one function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from paramdelta.models import Layer

# torch is imported where tensors are reduced: a job that reads sketch stores (numpy arrays
# already reduced) does not pay its seconds of import.
if TYPE_CHECKING:
    import torch

STAT_ARRAYS = ("layer_l2", "layer_sq", "layer_topk_l2", "tensor_l2", "layer_dot", "layer_base_sq")
# What the delta table takes of them; stores written before layer_dot and layer_base_sq existed
# lack those two (their table columns are NaN, and the features that need them say so).
TABLE_ARRAYS = ("layer_l2", "layer_sq", "layer_topk_l2", "layer_dot", "layer_base_sq")
BASE_ARRAYS = ("layer_dot", "layer_base_sq")


def topk_counts(numel: int, ks: Sequence[int]) -> list[int]:
    """Number of entries in the top K% of a layer: at least one."""
    return [max(1, math.ceil(numel * k / 100)) for k in ks]


def layer_stats(
    layers: Sequence[Layer],
    before: Mapping[str, torch.Tensor] | None,
    after: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    ks: Sequence[int],
    *,
    is_delta: bool = False,
) -> dict[str, np.ndarray]:
    """Statistics of after - before per layer (or of `after` itself when it already is the delta).

    Returns float64 arrays: layer_l2 and layer_sq [n_layers], layer_topk_l2
    [n_layers, len(ks)], tensor_l2 [n_tensors in layer order], layer_dot (<before, delta>)
    and layer_base_sq (||before||^2) [n_layers]; the last two are NaN when `before` is None
    (a delta given without its base).

    Computed where `after` lives (a GPU, say) with one transfer at the end. `after` may be
    an iterable of (name, tensor) pairs, consumed once: a layer's statistics are taken as
    soon as its last tensor arrives and its tensors dropped, so a model gathered one tensor
    at a time (DeepSpeed ZeRO) is never whole in memory.
    """
    import torch

    owner = {name: i for i, layer in enumerate(layers) for name in layer.params}
    pending: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor | None]]] = {}
    done: dict[int, tuple] = {}
    for name, tensor in after.items() if isinstance(after, Mapping) else after:
        if name not in owner:
            continue
        delta = tensor.to(torch.float32)
        base = None if before is None else before[name].to(delta.device, torch.float32)
        if not is_delta:
            delta = delta - base
        i = owner[name]
        pending.setdefault(i, {})[name] = (delta.flatten(), None if base is None else base.flatten())
        if len(pending[i]) == len(layers[i].params):
            done[i] = _one_layer(layers[i], pending.pop(i), ks)
    missing = [layer.name for i, layer in enumerate(layers) if i not in done]
    if missing:
        raise ValueError(f"layer statistics: no parameters for layers {missing[:5]}")
    tensor_l2 = [norm for i in range(len(layers)) for norm in done[i][0]]
    empty = torch.zeros(0, dtype=torch.float64)

    def stacked(part: int) -> np.ndarray:
        return torch.stack([done[i][part] for i in range(len(layers))]).cpu().numpy()

    layer_sq = stacked(1)
    return {
        "layer_l2": np.sqrt(layer_sq),
        "layer_sq": layer_sq,
        "layer_topk_l2": stacked(2) if ks else np.zeros((len(layers), 0)),
        "tensor_l2": torch.stack(tensor_l2).cpu().numpy() if tensor_l2 else empty.numpy(),
        "layer_dot": stacked(3),
        "layer_base_sq": stacked(4),
    }


def layer_l2(
    layers: Sequence[Layer],
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    *,
    stacked: bool = False,
) -> np.ndarray:
    """||after - before||_2 per layer, float64 [n_layers]: the per-epoch trajectory's statistic,
    one pass over the parameters with one tensor's difference alive at a time.

    `stacked`: every tensor of `after` has a leading dimension of copies (the texts trained side
    by side, paramdelta.side_by_side), and the result is [copies, n_layers]. Computed where the
    parameters are, with one transfer at the end.
    """
    import torch

    owner = {name: i for i, layer in enumerate(layers) for name in layer.params}
    sums = None
    for name, tensor in after.items() if isinstance(after, Mapping) else after:
        if name not in owner:
            continue
        copies = tensor if stacked else tensor.unsqueeze(0)
        difference = copies.to(torch.float32) - before[name].to(copies.device, torch.float32)
        squares = difference.flatten(1).square().sum(1, dtype=torch.float64)
        if sums is None:
            sums = torch.zeros((copies.shape[0], len(layers)), dtype=torch.float64, device=copies.device)
        sums[:, owner[name]] += squares
    if sums is None:
        raise ValueError("layer_l2: none of the parameters belongs to a layer")
    norms = sums.sqrt().cpu().numpy()
    return norms if stacked else norms[0]


def _one_layer(layer: Layer, tensors: dict[str, tuple[torch.Tensor, torch.Tensor | None]], ks: Sequence[int]):
    """One layer's tensor norms, sum of squares, top-K% L2, <base, delta> and ||base||^2, as
    float64 tensors where the delta is (the last two NaN without a base)."""
    import torch

    pieces = [tensors[name][0] for name in layer.params]
    bases = [tensors[name][1] for name in layer.params]
    if any(base is None for base in bases):
        bases = None
    flat = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    counts = topk_counts(flat.numel(), ks)
    if flat.device.type == "cpu":
        return _one_layer_numpy(
            [piece.numpy() for piece in pieces], flat.numpy(), counts, bases and [base.numpy() for base in bases]
        )
    tensor_l2 = [torch.linalg.vector_norm(piece, dtype=torch.float64) for piece in pieces]
    largest = torch.topk(flat.abs(), max(counts), sorted=True).values if counts else flat[:0]
    cumulative = torch.cumsum(largest.to(torch.float64).square(), 0)
    topk = cumulative[torch.tensor([n - 1 for n in counts], dtype=torch.long, device=flat.device)].sqrt()
    nan = torch.tensor(math.nan, dtype=torch.float64, device=flat.device)
    dot = sum(torch.dot(p.to(torch.float64), b.to(torch.float64)) for p, b in zip(pieces, bases)) if bases else nan
    base_sq = sum(torch.sum(b.to(torch.float64).square()) for b in bases) if bases else nan
    return tensor_l2, torch.sum(flat.to(torch.float64).square()), topk, dot, base_sq


def _one_layer_numpy(pieces: list[np.ndarray], flat: np.ndarray, counts: list[int], bases: list[np.ndarray] | None):
    """The CPU version of _one_layer: the same values (to float64 rounding), about twice as fast.

    numpy's partition, a float64 dot product per piece, and no sort: the top-K% sums of
    squares come from partitioning the magnitudes at each count in turn, largest count first,
    each step on what the previous one kept.
    """
    import torch

    squares = [_dot(piece, piece) for piece in pieces]
    tensor_l2 = [torch.tensor(np.sqrt(sq)) for sq in squares]
    dot = math.fsum(_dot(piece, base) for piece, base in zip(pieces, bases)) if bases else math.nan
    base_sq = math.fsum(_dot(base, base) for base in bases) if bases else math.nan
    return (
        tensor_l2,
        torch.tensor(math.fsum(squares), dtype=torch.float64),
        torch.from_numpy(_topk_l2(flat, counts)),
        torch.tensor(dot, dtype=torch.float64),
        torch.tensor(base_sq, dtype=torch.float64),
    )


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """The dot product in float64 (exact products of float32 values; the sum in float64)."""
    wide = a.astype(np.float64)
    return float(np.dot(wide, wide if b is a else b.astype(np.float64)))


def _topk_l2(flat: np.ndarray, counts: list[int]) -> np.ndarray:
    """L2 norm of the `count` largest magnitudes of `flat`, for each of `counts`."""
    if not counts:
        return np.zeros(0)
    descending = sorted(set(counts), reverse=True)
    kept = np.abs(flat)  # a new array, partitioned in place from here on
    if descending[0] < kept.size:
        kept.partition(kept.size - descending[0])
        kept = kept[kept.size - descending[0] :]
    # Between one count and the next smaller one lies a band of magnitudes: the sum of squares
    # of each band, then the top-K% sum of a count is that of its band and all bands above it.
    bands = []
    for count, smaller in zip(descending, [*descending[1:], 0]):
        if smaller:
            kept.partition(count - smaller)
            band, kept = kept[: count - smaller], kept[count - smaller :]
        else:
            band = kept
        bands.append(_dot(band, band))
    above = dict(zip(descending, np.cumsum(bands[::-1])[::-1]))
    return np.sqrt([above[count] for count in counts])


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


TEXT_COLUMNS = [
    "dataset",
    "model",
    "budget",
    "text_id",
    "label",
    "status",
    "failure",
    "failed_epoch",
    "n_tokens",
    "n_chunks",
    "epochs_run",
    "best_epoch",
    "final_loss",
    "best_loss",
    "skipped_steps",
    "seconds",
    "losses",
]


def read_job_store(path, labels: Mapping[str, int], ks: Sequence[int], base=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delta-table rows and per-text records of one training job's store (layout:
    train.JobRecords).

    `base` (the model's base snapshot group) is needed for `full` stores; a `delta` store read
    without it gives NaN `dot` and `base_sq` columns (no cosine distance or relative change).
    Failed texts have a record and no delta rows.
    """
    from paramdelta import store

    root = store.open_store(path)
    attrs = root.attrs.asdict()
    policy = attrs["policy"]
    stored_ks = list(attrs["ks"])
    missing = sorted(set(ks) - set(stored_ks)) if policy == "sketch" else []
    if missing:
        raise ValueError(
            f"{path}: sketch store holds top-K% for K in {stored_ks}, not K = {missing} that features.k asks for (rerun the training jobs)"
        )
    if policy == "full" and base is None:
        raise ValueError(
            f"{path}: a full store holds after-states only; the model's base snapshot is needed to take deltas"
        )
    layers = [
        Layer(
            index=i,
            name=layer["name"],
            group=layer["group"],
            block=layer["block"],
            params=tuple(layer["params"]),
            numel=layer["numel"],
        )
        for i, layer in enumerate(attrs["layers"])
    ]
    keys = {"budget": attrs["budget"], "model": attrs["model"], "dataset": attrs["dataset"]}
    records = attrs["records"]
    # tensor_l2 is not in the table: one array fewer to read.
    stored = set(root.array_keys())
    arrays = store.read_arrays(root, ["loss", *(a for a in TABLE_ARRAYS if a in stored and policy == "sketch")])
    texts = pd.DataFrame.from_records(
        [
            {
                **record,
                **keys,
                "label": labels[record["text_id"]],
                "losses": arrays["loss"][i, : record["epochs_run"]].tolist(),
            }
            for i, record in enumerate(records)
        ],
        columns=TEXT_COLUMNS,
    )
    ok = [i for i, record in enumerate(records) if record["status"] == "ok"]
    if not ok:
        return pd.DataFrame(), texts
    if policy == "sketch":
        columns = [stored_ks.index(k) for k in ks]
        nan = np.full((len(ok), len(layers)), np.nan)
        stats = {
            "layer_l2": arrays["layer_l2"][ok],
            "layer_sq": arrays["layer_sq"][ok],
            "layer_topk_l2": arrays["layer_topk_l2"][ok][:, :, columns],
            **{name: arrays[name][ok] if name in arrays else nan for name in BASE_ARRAYS},
        }
    else:
        per_text = [
            _stats_from_tensors(
                layers, root[f"texts/{records[i]['text_id']}/params"], base, ks, is_delta=policy == "delta"
            )
            for i in ok
        ]
        stats = {name: np.stack([one[name] for one in per_text]) for name in TABLE_ARRAYS}
    text_ids = [records[i]["text_id"] for i in ok]
    table = table_rows(layer_frame(layers), stats, ks, text_ids, [labels[t] for t in text_ids], keys)
    return table, texts


TRAJECTORY_COLUMNS = ["text_id", "label", "layer", "layer_index", "group", "epoch", "l2"]


def read_trajectory(path, labels: Mapping[str, int]) -> pd.DataFrame:
    """The per-epoch change of every layer of the texts of one training job's store that succeeded
    (train.JobRecords' `trajectory_l2`), long: TRAJECTORY_COLUMNS, epochs from 1. Empty when the
    job recorded none (snapshots.trajectory off)."""
    from paramdelta import store

    root = store.open_store(path)
    if "trajectory_l2" not in set(root.array_keys()):
        return pd.DataFrame({column: [] for column in TRAJECTORY_COLUMNS})
    attrs = root.attrs.asdict()
    trajectory = store.read_arrays(root, ["trajectory_l2"])["trajectory_l2"]
    layers = attrs["layers"]
    blocks = []
    for i, record in enumerate(attrs["records"]):
        if record["status"] != "ok":
            continue
        epochs = int(np.isfinite(trajectory[i, :, 0]).sum())
        values = trajectory[i, :epochs]  # [epochs, layers]
        blocks.append(
            pd.DataFrame(
                {
                    "text_id": record["text_id"],
                    "label": labels[record["text_id"]],
                    "layer": np.tile([layer["name"] for layer in layers], epochs),
                    "layer_index": np.tile(np.arange(len(layers)), epochs),
                    "group": np.tile([layer["group"] for layer in layers], epochs),
                    "epoch": np.repeat(np.arange(1, epochs + 1), len(layers)),
                    "l2": values.reshape(-1),
                }
            )
        )
    if not blocks:
        return pd.DataFrame({column: [] for column in TRAJECTORY_COLUMNS})
    return pd.concat(blocks, ignore_index=True)[TRAJECTORY_COLUMNS]


def table_rows(
    layers: pd.DataFrame, stats: Mapping[str, np.ndarray], ks, text_ids, text_labels, keys: dict
) -> pd.DataFrame:
    """Delta-table rows of several texts at once: the layer columns repeated per text, with
    the statistics [texts, layers] flattened text by text."""
    # Built column by column with one `take` each and a single DataFrame at the end: a frame
    # concatenated from one copy of the layers per text, then grown by inserts, cost 10x as
    # much (tens of ms for a job of 200 texts). The dtypes are those pandas infers for the values.
    n, m = len(text_ids), len(layers)
    per_text, per_layer = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    # Columns in front of the layer's: dataset, model, budget, label, text_id.
    columns = {
        key: pd.Series([value]).array.take(np.zeros(n * m, dtype=np.intp)) for key, value in reversed(keys.items())
    }
    columns["label"] = pd.Series(list(text_labels)).array.take(per_text)
    columns["text_id"] = pd.Series(list(text_ids)).array.take(per_text)
    for name in layers.columns:
        columns[name] = layers[name].array.take(per_layer)
    columns["l2"] = stats["layer_l2"].reshape(-1)
    columns["sq"] = stats["layer_sq"].reshape(-1)
    columns["dot"] = stats["layer_dot"].reshape(-1)
    columns["base_sq"] = stats["layer_base_sq"].reshape(-1)
    for j, k in enumerate(ks):
        columns[f"topk_l2_{k}"] = stats["layer_topk_l2"][:, :, j].reshape(-1)
    return pd.DataFrame(columns)


def _stats_from_tensors(layers, params_group, base, ks, *, is_delta: bool) -> dict[str, np.ndarray]:
    """Layer statistics of a full or delta store, reading one layer's tensors at a time.

    The next layer's tensors are read (and decompressed) in a second thread while this one's
    statistics are computed: two layers are in memory at most, and reading no longer adds
    to the computing (a fifth less time for a delta store of a 70M model on 2 CPU cores).
    """
    from concurrent.futures import ThreadPoolExecutor

    from paramdelta import store

    def read(layer: Layer):
        after = store.read_tensors(params_group, layer.params)
        return after, None if base is None else store.read_tensors(base, layer.params)

    parts = {name: [] for name in STAT_ARRAYS}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-layer") as reader:
        pending = reader.submit(read, layers[0]) if layers else None
        for i, layer in enumerate(layers):
            after, before = pending.result()
            pending = reader.submit(read, layers[i + 1]) if i + 1 < len(layers) else None
            one = layer_stats([layer], before, after, ks, is_delta=is_delta)
            del after, before
            for name in STAT_ARRAYS:
                parts[name].append(one[name])
    return {name: np.concatenate(values) for name, values in parts.items()}
