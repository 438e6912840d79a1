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


# Tensors on the CPU are reduced with numpy, several times as fast there; elsewhere (a GPU) with
# torch, where they are. Tests switch this off to run the device path on a CPU.
NUMPY_ON_CPU = True


def _numpy_path(tensor: torch.Tensor) -> bool:
    return NUMPY_ON_CPU and tensor.device.type == "cpu"


def layer_stats(
    layers: Sequence[Layer],
    before: Mapping[str, torch.Tensor] | None,
    after: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    ks: Sequence[int],
    *,
    is_delta: bool = False,
    base_sq: np.ndarray | None = None,
    scratch: Scratch | None = None,
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

    `base_sq`: ||before||^2 per layer (base_sq_per_layer), when the caller has it already: the
    same for every text of a job, so a job computes it once instead of once per text.
    `scratch`: the CPU buffers to reuse from one call to the next (one per thread).
    """
    import torch

    owner = {name: i for i, layer in enumerate(layers) for name in layer.params}
    pending: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor | None]]] = {}
    done: dict[int, tuple] = {}
    scratch = Scratch() if scratch is None else scratch
    try:
        for name, tensor in after.items() if isinstance(after, Mapping) else after:
            if name not in owner:
                continue
            i = owner[name]
            base = None if before is None else _to_device(before[name], tensor.device)
            if _numpy_path(tensor):
                # The delta is written straight into the layer's part of a float32 buffer: no torch
                # temporary, and no concatenation of the layer's tensors afterwards.
                delta = scratch.take(i, layers[i], name, tensor.numel())
                values = tensor.detach().to(torch.float32).numpy().reshape(-1)
                if is_delta:
                    if values.ctypes.data != delta.ctypes.data:  # else read into its place already
                        np.copyto(delta, values)
                else:
                    np.subtract(values, base.numpy().reshape(-1), out=delta)
                delta = torch.from_numpy(delta)
            else:
                delta = tensor.to(torch.float32)
                if not is_delta:
                    delta = delta - base
                delta = delta.flatten()
            pending.setdefault(i, {})[name] = (delta, None if base is None else base.flatten())
            if len(pending[i]) == len(layers[i].params):
                known = None if base_sq is None else float(base_sq[i])
                done[i] = _one_layer(layers[i], pending.pop(i), ks, scratch.flat(i, layers[i]), known)
                scratch.release(i)
    finally:
        # Layers left open (a layer with missing tensors, an error): their buffers go back, so a
        # Scratch kept for the next call starts clean.
        scratch.release_all()
    missing = [layer.name for i, layer in enumerate(layers) if i not in done]
    if missing:
        raise ValueError(f"layer statistics: no parameters for layers {missing[:5]}")
    tensor_l2 = [norm for i in range(len(layers)) for norm in done[i][0]]

    def stacked(part: int) -> np.ndarray:
        return _to_host([done[i][part] for i in range(len(layers))])

    layer_sq = stacked(1)
    return {
        "layer_l2": np.sqrt(layer_sq),
        "layer_sq": layer_sq,
        "layer_topk_l2": stacked(2) if ks else np.zeros((len(layers), 0)),
        "tensor_l2": _to_host(tensor_l2) if tensor_l2 else np.zeros(0),
        "layer_dot": stacked(3),
        "layer_base_sq": stacked(4),
    }


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` as float32 on `device`: asynchronous into a GPU (from page-locked host memory, a job
    whose base stays on the host; queued before the ops that read it), blocking into host memory,
    which numpy reads at once. A 16-bit base (train.base_dtype) crosses as it is and is widened
    where it arrives: half the bytes over the link."""
    import torch

    return tensor.detach().to(device, non_blocking=device.type != "cpu").to(torch.float32)


def _to_host(values: list) -> np.ndarray:
    """Per-layer values stacked into one float64 array: torch tensors where a layer was reduced
    on a device (one transfer for all of them), floats or numpy arrays where on the CPU."""
    import torch

    tensors = [value for value in values if torch.is_tensor(value)]
    if not tensors:
        return np.array(values, dtype=np.float64)
    device = tensors[0].device
    return (
        torch.stack(
            [
                value if torch.is_tensor(value) else torch.as_tensor(value, dtype=torch.float64).to(device)
                for value in values
            ]
        )
        .cpu()
        .numpy()
    )


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
    # Sums of squares [copies, layers]: in numpy for tensors on the CPU, in torch where the
    # tensors are (one transfer at the end).
    host, device = None, None
    block = np.empty(_BLOCK, dtype=np.float32)
    for name, tensor in after.items() if isinstance(after, Mapping) else after:
        if name not in owner:
            continue
        copies = (tensor if stacked else tensor.unsqueeze(0)).detach()
        if _numpy_path(copies):
            # numpy, a block at a time: several times faster than torch's float64 sum on a CPU,
            # and the squares are summed exactly as layer_stats sums them.
            base = _to_device(before[name], copies.device).numpy().reshape(-1)
            rows = copies.to(torch.float32).numpy().reshape(copies.shape[0], -1)
            if host is None:
                host = np.zeros((copies.shape[0], len(layers)))
            for r, row in enumerate(rows):
                host[r, owner[name]] += _diff_sq(row, base, block)
        else:
            difference = copies.to(torch.float32) - _to_device(before[name], copies.device)
            if device is None:
                device = torch.zeros((copies.shape[0], len(layers)), dtype=torch.float64, device=copies.device)
            # Squares of the float32 differences taken in float64, as the CPU path and layer_stats take them.
            device[:, owner[name]] += difference.flatten(1).to(torch.float64).square().sum(1)
    if host is None and device is None:
        raise ValueError("layer_l2: none of the parameters belongs to a layer")
    norms = np.sqrt((0 if host is None else host) + (0 if device is None else device.cpu().numpy()))
    return norms if stacked else norms[0]


def _one_layer(
    layer: Layer,
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
    ks: Sequence[int],
    flat: np.ndarray | None = None,
    base_sq: float | None = None,
):
    """One layer's tensor norms, sum of squares, top-K% L2, <base, delta> and ||base||^2 (the
    last two NaN without a base): float64 tensors where the delta is on a device, floats and
    numpy arrays where it is on the CPU (layer_stats stacks either with _to_host).

    On a CPU, `flat` is the layer's pieces side by side in one buffer that this function may
    overwrite (Scratch); `base_sq` is ||base||^2 when the caller knows it already.
    """
    import torch

    pieces = [tensors[name][0] for name in layer.params]
    bases = [tensors[name][1] for name in layer.params]
    if any(base is None for base in bases):
        bases = None
    if _numpy_path(pieces[0]):
        if flat is None:
            flat = np.concatenate([piece.numpy() for piece in pieces])
        return _one_layer_numpy(
            [piece.numpy() for piece in pieces],
            flat,
            topk_counts(flat.size, ks),
            bases and [base.numpy() for base in bases],
            base_sq,
        )
    flat = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    counts = topk_counts(flat.numel(), ks)
    tensor_l2 = [torch.linalg.vector_norm(piece, dtype=torch.float64) for piece in pieces]
    topk = _topk_l2_torch(flat.abs(), counts)
    # Scalars made on the device by a fill (torch.tensor(x, device=...) copies from pageable host
    # memory, a synchronisation of the stream each time).
    nan = torch.full((), math.nan, dtype=torch.float64, device=flat.device)
    dot = sum(torch.dot(p.to(torch.float64), b.to(torch.float64)) for p, b in zip(pieces, bases)) if bases else nan
    if not bases:
        base_sq = nan
    elif base_sq is None:
        base_sq = sum(torch.sum(b.to(torch.float64).square()) for b in bases)
    else:
        base_sq = torch.full((), base_sq, dtype=torch.float64, device=flat.device)
    return tensor_l2, torch.sum(flat.to(torch.float64).square()), topk, dot, base_sq


def _topk_l2_torch(magnitudes: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """_topk_l2 where the magnitudes are (a GPU): the L2 norm in float64 of the `count` largest,
    for each of `counts`, with no sort. The largest count is selected from all the magnitudes,
    each smaller one from what the previous selection kept (torch.topk unsorted: a radix select
    and a gather), and each selection's norm taken as it is. Sorting the top half of every layer,
    as one sorted topk and a running sum did, is what a GPU is slowest at."""
    import torch

    norms = {}
    kept = magnitudes
    for count in sorted(set(counts), reverse=True):
        if count < kept.numel():
            kept = torch.topk(kept, count, sorted=False).values
        norms[count] = torch.linalg.vector_norm(kept, dtype=torch.float64)
    if not counts:
        return torch.zeros(0, dtype=torch.float64, device=magnitudes.device)
    return torch.stack([norms[count] for count in counts])


def _one_layer_numpy(
    pieces: list[np.ndarray],
    flat: np.ndarray,
    counts: list[int],
    bases: list[np.ndarray] | None,
    base_sq: float | None = None,
):
    """The CPU version of _one_layer: the same values (to float64 rounding), several times as fast.

    Float64 dot products of the float32 pieces that cast in cache-sized blocks (np.einsum with
    dtype float64: no float64 copy of a layer), numpy's partition and no sort: the top-K% sums
    of squares come from partitioning the magnitudes at each count in turn, largest count first,
    each step on what the previous one kept. `flat` (the pieces side by side) is overwritten.
    """
    squares = [_dot(piece, piece) for piece in pieces]
    dot = math.fsum(_dot(piece, base) for piece, base in zip(pieces, bases)) if bases else math.nan
    if not bases:
        base_sq = math.nan
    elif base_sq is None:
        base_sq = math.fsum(_dot(base, base) for base in bases)
    # Python floats and numpy, not torch: a few torch scalars per layer cost more than the
    # arithmetic of a small layer.
    return [math.sqrt(sq) for sq in squares], math.fsum(squares), _topk_l2(flat, counts), dot, base_sq


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """The dot product in float64 (exact products of float32 values; the sum in float64).

    einsum casts in small buffered blocks: twice as fast as a float64 copy and a BLAS dot."""
    return float(np.einsum("i,i->", a.reshape(-1), b.reshape(-1), dtype=np.float64))


_BLOCK = 1 << 16  # entries of float32 a block: 256 KiB, in a core's L2 cache


def _diff_sq(a: np.ndarray, b: np.ndarray, block: np.ndarray) -> float:
    """||a - b||^2 of float32 vectors, the difference rounded to float32 as torch's would be and
    its squares summed in float64, through one small buffer (no difference array of a layer)."""
    total = 0.0
    for start in range(0, a.size, block.size):
        part = block[: min(block.size, a.size - start)]
        np.subtract(a[start : start + part.size], b[start : start + part.size], out=part)
        total += _dot(part, part)
    return total


class Summariser:
    """layer_stats of one base for many states (a job's texts): ||base||^2 per layer taken once,
    on the first call, and one Scratch for all the calls."""

    def __init__(self, layers: Sequence[Layer], base: Mapping[str, torch.Tensor], ks: Sequence[int]):
        self.layers, self.base, self.ks = layers, base, ks
        self.base_sq: np.ndarray | None = None
        self.scratch = Scratch()

    def __call__(self, after) -> dict[str, np.ndarray]:
        if self.base_sq is None:
            self.base_sq = base_sq_per_layer(self.layers, self.base)
        return layer_stats(self.layers, self.base, after, self.ks, base_sq=self.base_sq, scratch=self.scratch)


def base_sq_per_layer(layers: Sequence[Layer], before: Mapping[str, torch.Tensor]) -> np.ndarray:
    """||before||^2 per layer, float64 [n_layers]: what layer_stats reports as layer_base_sq,
    for a job to compute once and hand to layer_stats for every text."""
    import torch

    out = np.zeros(len(layers))
    for i, layer in enumerate(layers):
        tensors = [before[name].detach().to(torch.float32) for name in layer.params]
        if all(_numpy_path(t) for t in tensors):
            out[i] = math.fsum(_dot(t.numpy(), t.numpy()) for t in tensors)
        else:
            out[i] = float(sum(torch.sum(t.to(torch.float64).square()) for t in tensors))
    return out


class Scratch:
    """Float32 buffers that hold the layers under reduction (each layer's tensors side by side),
    handed from one layer to the next instead of allocated per layer. A caller that reduces
    many states (a job's texts) keeps one and passes it to every layer_stats call, so that the
    buffers are not allocated, and page-faulted, again for every text (one per thread)."""

    def __init__(self):
        self.free: list[np.ndarray] = []
        # layer -> [buffer, names of the tensors placed in it, entries used]; used is -1 once a
        # tensor did not fit (then the layer's tensors are not side by side in the buffer).
        self.open: dict[int, list] = {}

    def reserve(self, i: int, layer: Layer) -> np.ndarray:
        """The buffer that layer i's tensors will take, in layer order (`take`): a reader may
        put them there beforehand (store.read_tensors(into=...)), and `take` then hands out
        the very parts that hold them."""
        if i not in self.open:
            fits = [buffer for buffer in self.free if buffer.size >= layer.numel]
            buffer = min(fits, key=len) if fits else np.empty(layer.numel, dtype=np.float32)
            self.free = [other for other in self.free if other is not buffer]
            self.open[i] = [buffer, [], 0]
        return self.open[i][0]

    def take(self, i: int, layer: Layer, name: str, n: int) -> np.ndarray:
        """Room for layer i's tensor `name` of n entries, after the layer's tensors placed so far."""
        self.reserve(i, layer)
        slot = self.open[i]
        buffer, names, used = slot
        names.append(name)
        if used < 0 or used + n > buffer.size:  # a layer larger than its numel says
            slot[2] = -1
            return np.empty(n, dtype=np.float32)
        slot[2] = used + n
        return buffer[used : used + n]

    def flat(self, i: int, layer: Layer) -> np.ndarray | None:
        """Layer i's entries side by side in its tensors' order, or None where they are not
        (a tensor outside the buffer, or tensors that arrived in another order), or where the
        layer took no buffer (its tensors are on a device)."""
        if i not in self.open:
            return None
        buffer, names, used = self.open[i]
        return buffer[:used] if used >= 0 and names == list(layer.params) else None

    def release(self, i: int) -> None:
        if i not in self.open:
            return
        buffer, _, used = self.open.pop(i)
        if used >= 0:
            self.free.append(buffer)

    def release_all(self) -> None:
        for i in list(self.open):
            self.release(i)


_SAME_ORDER_INT = {np.dtype(np.float32): np.dtype(np.int32), np.dtype(np.float64): np.dtype(np.int64)}


def _topk_l2(flat: np.ndarray, counts: list[int]) -> np.ndarray:
    """L2 norm of the `count` largest magnitudes of `flat`, for each of `counts`; `flat` is
    overwritten (its magnitudes, partitioned)."""
    if not counts:
        return np.zeros(0)
    descending = sorted(set(counts), reverse=True)
    magnitudes = np.abs(flat, out=flat)  # partitioned in place from here on
    # Non-negative IEEE floats order as their bit patterns do as signed integers, and numpy's
    # partition of integers is several times as fast as that of floats (2.3 against 0.6 ns an
    # entry for 26 M float32 on an AVX-512 Xeon): the magnitudes are partitioned as integers.
    kept = magnitudes.view(_SAME_ORDER_INT.get(magnitudes.dtype, magnitudes.dtype))
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
        band = band.view(magnitudes.dtype)
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
    "replay_exact",
    "seconds",
    "losses",
]


def read_job_store(
    path, labels: Mapping[str, int], ks: Sequence[int], base=None, *, threads: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delta-table rows and per-text records of one training job's store (layout:
    train.JobRecords).

    `base` (the model's base snapshot group) is needed for `full` stores; a `delta` store read
    without it gives NaN `dot` and `base_sq` columns (no cosine distance or relative change).
    Failed texts have a record and no delta rows. `threads`: the CPU cores the statistics of a
    full or delta store may take (one more thread reads ahead).
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
        groups = [root[f"texts/{records[i]['text_id']}/params"] for i in ok]
        stats = _stats_from_stores(layers, groups, base, ks, is_delta=policy == "delta", threads=threads)
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


def _stats_from_stores(layers, groups, base, ks, *, is_delta: bool, threads: int = 1) -> dict[str, np.ndarray]:
    """Layer statistics [texts, layers, ...] of a full or delta store's texts (their `params`
    groups), reading one layer of one text at a time.

    Layer by layer, the base's layer read once for all texts (not once per text); each (layer,
    text) is read, decompressed and reduced by one of `threads` + 1 worker threads (numpy and
    the zstd codec release the GIL, so one text's layer is read while another's statistics are
    computed), with as many in flight as there are workers: a few layers in memory at most.
    """
    import threading
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from paramdelta import store

    local = threading.local()

    def read_base(layer: Layer):
        tensors = store.read_tensors(base, layer.params)
        return tensors, base_sq_per_layer([layer], tensors)

    def reduce(layer: Layer, group, base_layer):
        if not hasattr(local, "scratch"):
            local.scratch = Scratch()
        # Decompressed straight into the buffer the statistics take the layer in (as layer 0
        # of a one-layer call): no array allocated per tensor, no copy.
        after = store.read_tensors(group, layer.params, into=local.scratch.reserve(0, layer))
        before, base_sq = (None, None) if base_layer is None else base_layer.result()
        return layer_stats([layer], before, after, ks, is_delta=is_delta, base_sq=base_sq, scratch=local.scratch)

    workers = max(1, int(threads)) + 1
    parts = {name: [[None] * len(layers) for _ in groups] for name in STAT_ARRAYS}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reduce-layer") as pool:
        pending = deque()
        for i, layer in enumerate(layers):
            # Submitted before the layer's texts, so a worker always starts it before one waits on it.
            base_layer = None if base is None else pool.submit(read_base, layer)
            for t, group in enumerate(groups):
                pending.append((i, t, pool.submit(reduce, layer, group, base_layer)))
                while len(pending) > workers:
                    _collect(parts, *pending.popleft())
        while pending:
            _collect(parts, *pending.popleft())
    return {
        name: np.stack([np.concatenate(per_layer) for per_layer in per_text]) if groups else np.zeros((0,))
        for name, per_text in parts.items()
    }


def _collect(parts, i: int, t: int, future) -> None:
    one = future.result()
    for name in STAT_ARRAYS:
        parts[name][t][i] = one[name]
