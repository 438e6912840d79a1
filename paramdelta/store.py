"""Zarr v3 stores for parameter snapshots and per-text statistics.

On-disk layout (every store is a plain Zarr v3 directory store, readable with
``zarr.open_group(path, mode="r")`` and no help from this module)::

    <store>/                      root group
        zarr.json                 attributes: caller's attrs + {"provenance": provenance()}
        <tensor name>/            one array per tensor, named exactly as in PyTorch,
                                  e.g. ``gpt_neox.layers.0.attention.query_key_value.weight``
                                  (dots are legal in Zarr v3 node names, so no encoding)
            zarr.json             attribute {"dtype": "<torch/numpy dtype name>"}
            c/<i>/<j>/...         zstd-compressed chunks, split along the first axis
        <subgroup>/               optional, e.g. statistics written with write_arrays

bfloat16 has no Zarr data type, so its bits are stored as uint16 and the array
attribute ``dtype == "bfloat16"`` tells ``read_tensors`` to reinterpret them; all
other dtypes are stored natively.  Every array carries the ``dtype`` attribute so
readers need not special-case anything.

A store only ever appears at its final path complete: ``atomic_group`` writes to a
temporary sibling ``<path>.tmp-<pid>-<random>`` and renames it into place at the end.
A writer killed mid-way leaves that temporary directory behind, never a partial store.
"""

from __future__ import annotations

import datetime
import glob
import importlib.metadata
import math
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from paramdelta.atomic import disk_full

# torch is imported where tensors are read or written: a job that reduces sketch stores (numpy
# arrays) does not pay its seconds of import.
if TYPE_CHECKING:
    import torch

__all__ = [
    "provenance",
    "atomic_group",
    "write_tensors",
    "read_tensors",
    "write_arrays",
    "read_arrays",
    "open_store",
    "write_snapshot",
]

_COMPRESSOR = ZstdCodec(level=3)
_BFLOAT16 = "bfloat16"
_PROVENANCE_PACKAGES = ("torch", "transformers", "zarr", "numpy", "paramdelta")


def provenance() -> dict[str, Any]:
    """Describe the software and machine that wrote a store, so results can be traced back.

    Never raises: a missing package or git checkout is recorded as ``None`` rather than
    costing a multi-hour training run its output.
    """
    return {
        "versions": {name: _package_version(name) for name in _PROVENANCE_PACKAGES},
        "git_revision": _git_revision(),
        "hostname": socket.gethostname(),
        "timestamp_utc": datetime.datetime.now(datetime.UTC).isoformat(),
    }


def _package_version(name: str) -> str | None:
    # Metadata lookup instead of import: importing transformers takes seconds.
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else None


@contextmanager
def atomic_group(path: str | os.PathLike, attrs: dict | None = None) -> Iterator[zarr.Group]:
    """Yield a writable Zarr v3 root group that appears at ``path`` only once complete.

    Downstream Snakemake rules treat the existence of a store as proof that it is whole, so
    the group is built at a temporary sibling and renamed into place on normal exit, after
    ``attrs`` and ``{"provenance": provenance()}`` are written to it (provenance wins over a
    caller's ``"provenance"`` key, so copied attrs cannot fake it).  An existing store at
    ``path`` is replaced.  On an exception the temporary directory is removed and the
    exception propagates.  ``attrs`` are checked before anything is written, so a value
    that is not JSON-serialisable fails fast instead of after hours of writing.
    """
    final = Path(path)
    root_attrs = _jsonable(attrs or {}, "")
    final.parent.mkdir(parents=True, exist_ok=True)
    # A job killed outright (SIGKILL, scancel, a lost node) leaves its temporary sibling
    # behind. Only one job ever writes a given output, so any such sibling is stale: drop it
    # rather than let killed attempts fill the disk.
    for stale in final.parent.glob(f"{glob.escape(final.name)}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    temporary = _sibling(final, "tmp")
    try:
        group = zarr.open_group(temporary, mode="w-", zarr_format=3)
        yield group
        group.update_attributes({**root_attrs, "provenance": provenance()})
        _replace(temporary, final)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        full = disk_full(error, final)
        if full is not None:
            raise full from error
        raise


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def _replace(source: Path, destination: Path) -> None:
    # Move an old store aside before deleting it: deleting a large store in place would
    # expose a half-deleted store at ``destination`` for as long as the deletion takes.
    if os.path.lexists(destination):
        old = _sibling(destination, "old")
        os.rename(destination, old)
        os.rename(source, destination)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        os.rename(source, destination)


def write_tensors(
    group: zarr.Group,
    tensors: Mapping[str, torch.Tensor | np.ndarray] | Iterable[tuple[str, torch.Tensor | np.ndarray]],
    *,
    chunk_bytes: int = 4 << 20,
) -> None:
    """Write each tensor as its own array in ``group``, chunked along the first axis.

    Tensors are converted one at a time (to CPU, contiguous, sharing memory where
    possible) so that a 28 GB model is never held twice; given as an iterable of (name,
    tensor) pairs, each is made only when the previous one is written (a delta computed
    tensor by tensor, say).  Chunks of at most ``chunk_bytes`` keep the file count of a
    7B model in the thousands while letting a reader fetch a slice without decompressing
    the whole tensor.
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    for name, tensor in tensors.items() if isinstance(tensors, Mapping) else tensors:
        data, dtype_name = _to_numpy(name, tensor)
        _create(group, name, data, dtype_name, _chunk_shape(data.shape, data.itemsize, chunk_bytes))
        del tensor, data  # written: not kept alive while the next one is made


def read_tensors(
    group: zarr.Group, names: Iterable[str] | None = None, *, into: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Read arrays of ``group`` as CPU tensors, restoring bfloat16 bit for bit.

    ``names=None`` reads every array directly in ``group`` (not in subgroups); naming
    tensors reads only those tensors' chunks.

    ``into``: a flat buffer whose consecutive parts the arrays take, in order (each array
    advances the offset by its size). Arrays of the buffer's dtype are decompressed straight
    into their part, and their tensors are views of it: no new array, and no copy to put a
    layer's tensors side by side. Others, and those past the buffer's end, are read as usual.
    """
    import torch
    from zarr.core.buffer import cpu

    tensors, offset = {}, 0
    for name, array in _arrays(group, names):
        if into is not None:
            part = into[offset : offset + array.size]
            offset += array.size
            if part.size == array.size and array.dtype == into.dtype and array.attrs.get("dtype") != _BFLOAT16:
                part = part.reshape(array.shape)
                array.get_basic_selection(..., out=cpu.NDBuffer.from_numpy_array(part))
                tensors[name] = torch.from_numpy(part)
                continue
        data = np.asarray(array[...])
        if array.attrs.get("dtype") == _BFLOAT16:
            tensors[name] = torch.from_numpy(data.view(np.int16)).view(torch.bfloat16)
        else:
            tensors[name] = torch.from_numpy(data)
    return tensors


def write_arrays(group: zarr.Group, arrays: Mapping[str, np.ndarray]) -> None:
    """Write small arrays (per-text statistics) as single-chunk arrays in ``group``.

    One chunk per array because statistics are read whole; splitting them would only add
    files.
    """
    for name, array in arrays.items():
        data, dtype_name = _to_numpy(name, array)
        _create(group, name, data, dtype_name, tuple(max(1, n) for n in data.shape))


def read_arrays(group: zarr.Group, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read arrays of ``group`` as numpy arrays; ``names=None`` reads all arrays directly in it.

    bfloat16 arrays are refused rather than returned as their raw uint16 bits, which
    would silently be wrong numbers; use ``read_tensors`` for them.
    """
    arrays = {}
    for name, array in _arrays(group, names):
        if array.attrs.get("dtype") == _BFLOAT16:
            raise TypeError(f"array {name!r} holds bfloat16, which numpy lacks; use read_tensors")
        arrays[name] = np.asarray(array[...])
    return arrays


def open_store(path: str | os.PathLike) -> zarr.Group:
    """Open a store read-only.

    A missing store is reported as ``FileNotFoundError`` naming the path, because zarr
    would otherwise raise an error that does not say which of many stores is missing.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no Zarr store at {os.fspath(path)!r}")
    return zarr.open_group(path, mode="r", zarr_format=3)


def write_snapshot(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], attrs: dict) -> None:
    """Atomically write a parameter snapshot (one array per tensor at the root) to ``path``."""
    with atomic_group(path, attrs) as group:
        write_tensors(group, tensors)


def _to_numpy(name: str, value: torch.Tensor | np.ndarray) -> tuple[np.ndarray, str]:
    """Return the array to store and the logical dtype name recorded in its attributes."""
    if isinstance(value, np.ndarray):
        return value, str(value.dtype)
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name!r}: expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    tensor = value.detach().cpu().contiguous()
    dtype_name = str(tensor.dtype).removeprefix("torch.")
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16), dtype_name
    try:
        return tensor.numpy(), dtype_name
    except TypeError as error:
        raise TypeError(f"{name!r}: dtype {dtype_name} cannot be stored: {error}") from error


def _chunk_shape(shape: tuple[int, ...], itemsize: int, chunk_bytes: int) -> tuple[int, ...]:
    """Largest chunk of at most ``chunk_bytes`` that is split along the first axis only.

    Only if a single slice along an axis exceeds ``chunk_bytes`` is the next axis split
    too, so ordinary parameters (rows of at most a few MiB) are chunked by rows alone.
    """
    chunks = []
    for axis, length in enumerate(shape):
        slice_bytes = itemsize * math.prod(max(1, n) for n in shape[axis + 1 :])
        if slice_bytes <= chunk_bytes:
            chunks.append(max(1, min(length, chunk_bytes // slice_bytes)))
            chunks.extend(max(1, n) for n in shape[axis + 1 :])
            break
        chunks.append(1)
    return tuple(chunks)


def _create(group: zarr.Group, name: str, data: np.ndarray, dtype_name: str, chunks: tuple[int, ...]) -> None:
    array = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        compressors=_COMPRESSOR,
        attributes={"dtype": dtype_name},
    )
    array[...] = data


def _arrays(group: zarr.Group, names: Iterable[str] | None) -> Iterator[tuple[str, zarr.Array]]:
    if names is None:
        yield from sorted(group.arrays())
        return
    for name in names:
        array = group[name]
        if not isinstance(array, zarr.Array):
            raise KeyError(f"{name!r} in {group.store_path} is a group, not an array")
        yield name, array


def _jsonable(value: Any, key: str) -> Any:
    """Convert ``value`` (at dotted attribute path ``key``) to JSON types, or raise naming the key."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item(), key)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), key)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        converted = {}
        for item_key, item in value.items():
            if not isinstance(item_key, str):
                raise TypeError(f"attribute key {item_key!r} is not a string")
            converted[item_key] = _jsonable(item, f"{key}.{item_key}" if key else item_key)
        return converted
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{key}[{index}]") for index, item in enumerate(value)]
    raise TypeError(f"attribute {key!r}: {type(value).__name__} is not JSON-serialisable")
