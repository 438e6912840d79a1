"""Tests for paramdelta.store: round trips, on-disk format, chunking and atomicity."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import zarr

from paramdelta.store import (
    atomic_group,
    open_store,
    provenance,
    read_arrays,
    read_tensors,
    write_arrays,
    write_snapshot,
    write_tensors,
)

QKV = "gpt_neox.layers.0.attention.query_key_value.weight"


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """Integer view of a tensor's bits, so NaNs and signed zeros compare exactly."""
    integer = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
    return tensor.view(integer)


def _sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    bf16 = torch.randn(17, 33, generator=generator).to(torch.bfloat16)
    bf16[0, :4] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-40])
    return {
        QKV: bf16,
        "gpt_neox.layers.0.input_layernorm.bias": torch.randn(33, generator=generator).to(torch.bfloat16),
        "embed_out.weight": torch.randn(9, 5, generator=generator),
        "half": torch.randn(4, 6, generator=generator).half(),
        "steps": torch.arange(-5, 7, dtype=torch.int64) * (1 << 40),
        "mask": torch.tensor([True, False, True]),
        "negative_zeros": torch.full((8,), -0.0),
    }


def test_tensors_round_trip_bit_for_bit(tmp_path):
    tensors = _sample_tensors()
    path = tmp_path / "snapshot.zarr"
    write_snapshot(path, tensors, {"text_id": "t0"})

    restored = read_tensors(open_store(path))

    assert set(restored) == set(tensors)
    for name, tensor in tensors.items():
        assert restored[name].dtype == tensor.dtype, name
        assert restored[name].shape == tensor.shape, name
        assert torch.equal(_bits(restored[name]), _bits(tensor)), name


def test_numpy_and_non_contiguous_inputs_round_trip(tmp_path):
    matrix = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    inputs = {"transposed": matrix.T, "numpy": np.arange(10, dtype=np.uint8), "grad": matrix.requires_grad_()}
    with atomic_group(tmp_path / "s.zarr") as group:
        write_tensors(group, inputs)

    restored = read_tensors(open_store(tmp_path / "s.zarr"))

    assert torch.equal(restored["transposed"], matrix.T.detach())
    assert torch.equal(restored["numpy"], torch.arange(10, dtype=torch.uint8))
    assert torch.equal(restored["grad"], matrix.detach())


def test_store_is_plain_zarr_v3_with_bfloat16_as_uint16(tmp_path):
    path = tmp_path / "snapshot.zarr"
    write_snapshot(path, _sample_tensors(), {"text_id": "t0", "shape": (2, 3), "lr": np.float32(0.5)})

    root = zarr.open_group(path, mode="r")

    assert root.metadata.zarr_format == 3
    assert root[QKV].dtype == np.dtype("uint16")
    assert root[QKV].attrs["dtype"] == "bfloat16"
    assert root["embed_out.weight"].attrs["dtype"] == "float32"
    assert root["steps"].attrs["dtype"] == "int64"
    assert root.attrs["text_id"] == "t0"
    assert root.attrs["shape"] == [2, 3]
    assert root.attrs["lr"] == 0.5
    recorded = root.attrs["provenance"]
    assert set(recorded) == {"versions", "git_revision", "hostname", "timestamp_utc"}
    assert recorded["versions"]["zarr"] == zarr.__version__
    # Dotted names are real node names, not nested groups.
    assert QKV in set(root.array_keys())
    assert (path / QKV / "zarr.json").is_file()


def test_provenance_is_json_serialisable():
    recorded = provenance()
    assert json.loads(json.dumps(recorded)) == recorded
    assert set(recorded["versions"]) == {"torch", "transformers", "zarr", "numpy", "paramdelta"}
    assert recorded["versions"]["torch"] is not None
    assert recorded["git_revision"] is None or len(recorded["git_revision"]) == 40


def test_unserialisable_attribute_is_rejected_before_writing(tmp_path):
    path = tmp_path / "snapshot.zarr"
    with pytest.raises(TypeError, match="config.optimizer"):
        with atomic_group(path, {"config": {"optimizer": object()}}):
            pytest.fail("the body must not run with invalid attrs")
    assert list(tmp_path.iterdir()) == []


def test_read_selected_tensors_reads_only_those(tmp_path):
    path = tmp_path / "snapshot.zarr"
    write_snapshot(path, _sample_tensors(), {})
    # Removing another tensor's chunks proves its data is never touched.
    for chunk in (path / "embed_out.weight" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()

    restored = read_tensors(open_store(path), [QKV])

    assert list(restored) == [QKV]
    assert torch.equal(_bits(restored[QKV]), _bits(_sample_tensors()[QKV]))


def test_read_into_a_buffer_puts_float32_tensors_side_by_side(tmp_path):
    """read_tensors(into=...): float32 arrays are decompressed into consecutive parts of the
    buffer and their tensors are views of it; others (bfloat16 as uint16, float16) and those
    past its end are read as usual, each still taking its part of the buffer."""
    tensors = {
        "first": torch.randn(3, 4),
        QKV: torch.randn(2, 5).to(torch.bfloat16),
        "half": torch.randn(6).half(),
        "second": torch.randn(7),
        "past_the_end": torch.randn(5),
    }
    path = tmp_path / "snapshot.zarr"
    write_snapshot(path, tensors, {"text_id": "t0"})
    buffer = np.full(12 + 10 + 6 + 7 + 2, np.nan, dtype=np.float32)  # the last tensor does not fit

    read = read_tensors(open_store(path), list(tensors), into=buffer)

    assert list(read) == list(tensors)
    for name, tensor in tensors.items():
        assert read[name].dtype == tensor.dtype and torch.equal(_bits(read[name]), _bits(tensor)), name
    assert np.shares_memory(read["first"].numpy(), buffer) and np.shares_memory(read["second"].numpy(), buffer)
    np.testing.assert_array_equal(buffer[:12], tensors["first"].numpy().reshape(-1))
    np.testing.assert_array_equal(buffer[28:35], tensors["second"].numpy())
    assert np.isnan(buffer[12:28]).all() and np.isnan(buffer[35:]).all()  # parts of the others, untouched
    for name in (QKV, "half", "past_the_end"):
        assert not np.shares_memory(_bits(read[name]).numpy(), buffer), name


def test_read_all_skips_subgroups(tmp_path):
    path = tmp_path / "store.zarr"
    with atomic_group(path) as group:
        write_tensors(group, {"a": torch.ones(3)})
        write_arrays(group.require_group("stats"), {"loss": np.zeros(2)})

    assert list(read_tensors(open_store(path))) == ["a"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunks_split_first_axis_within_bounds(tmp_path, dtype):
    chunk_bytes = 64 << 10
    tensor = torch.randn(1000, 96).to(dtype)
    path = tmp_path / "snapshot.zarr"
    with atomic_group(path) as group:
        write_tensors(group, {"big": tensor, "small": torch.ones(5, 3, dtype=dtype)}, chunk_bytes=chunk_bytes)

    root = zarr.open_group(path, mode="r")
    big = root["big"]
    chunk_size = math.prod(big.chunks) * big.dtype.itemsize
    assert big.chunks[1:] == (96,)
    assert chunk_bytes / 8 < chunk_size <= chunk_bytes
    assert big.nchunks >= 3
    assert root["small"].chunks == (5, 3)
    assert torch.equal(_bits(read_tensors(root, ["big"])["big"]), _bits(tensor))


def test_default_chunks_of_a_64_mib_tensor(tmp_path):
    # Zeros are cheap to write: zarr skips chunks equal to the fill value.
    with atomic_group(tmp_path / "s.zarr") as group:
        write_tensors(group, {"embed_in.weight": torch.zeros(4096, 4096)})

    array = open_store(tmp_path / "s.zarr")["embed_in.weight"]
    assert array.chunks == (256, 4096)
    assert array.nchunks == 16


def test_rows_larger_than_chunk_bytes_split_second_axis(tmp_path):
    tensor = torch.randn(3, 4096)
    with atomic_group(tmp_path / "s.zarr") as group:
        write_tensors(group, {"wide": tensor}, chunk_bytes=4096)

    root = open_store(tmp_path / "s.zarr")
    assert root["wide"].chunks == (1, 1024)
    assert torch.equal(read_tensors(root)["wide"], tensor)


def test_arrays_round_trip_in_subgroup(tmp_path):
    arrays = {
        "token_loss": np.linspace(0, 1, 50, dtype=np.float32),
        "delta_norm": np.arange(12, dtype=np.float64).reshape(3, 4),
        "count": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.float16),
    }
    path = tmp_path / "stats.zarr"
    with atomic_group(path, {"text_id": "t1"}) as group:
        write_arrays(group.require_group("stats"), arrays)

    stats = open_store(path)["stats"]
    restored = read_arrays(stats)
    assert set(restored) == set(arrays)
    for name, array in arrays.items():
        assert restored[name].dtype == array.dtype, name
        np.testing.assert_array_equal(restored[name], array)
    assert stats["delta_norm"].nchunks == 1
    assert stats["token_loss"].attrs["dtype"] == "float32"
    assert list(read_arrays(stats, ["count"])) == ["count"]


def test_read_arrays_refuses_bfloat16(tmp_path):
    write_snapshot(tmp_path / "s.zarr", {"w": torch.ones(2, dtype=torch.bfloat16)}, {})
    with pytest.raises(TypeError, match="read_tensors"):
        read_arrays(open_store(tmp_path / "s.zarr"))


def test_open_store_missing_path_names_it(tmp_path):
    missing = tmp_path / "absent.zarr"
    with pytest.raises(FileNotFoundError, match="absent.zarr"):
        open_store(missing)


def test_exception_inside_atomic_group_leaves_nothing(tmp_path):
    path = tmp_path / "snapshot.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_group(path, {"text_id": "t0"}) as group:
            write_tensors(group, {"a": torch.ones(4)})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_store_is_replaced(tmp_path):
    path = tmp_path / "snapshot.zarr"
    write_snapshot(path, {"old": torch.zeros(2)}, {"version": 1})
    write_snapshot(path, {"new": torch.ones(2)}, {"version": 2})

    root = open_store(path)
    assert root.attrs["version"] == 2
    assert list(read_tensors(root)) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.zarr"]


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from paramdelta.store import atomic_group, write_tensors

    with atomic_group(sys.argv[1], {"text_id": "killed"}) as group:
        for index in range(1000):
            write_tensors(group, {f"layers.{index}.weight": torch.ones(64, 64)})
            if index == 0:
                print("written", flush=True)
            time.sleep(0.01)
    """
)


def test_sigkill_mid_write_leaves_no_store(tmp_path):
    path = tmp_path / "snapshot.zarr"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    assert not path.exists()
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith("snapshot.zarr.tmp-")

    tensors = _sample_tensors()
    write_snapshot(path, tensors, {"text_id": "complete"})
    root = open_store(path)
    assert root.attrs["text_id"] == "complete"
    restored = read_tensors(root)
    assert set(restored) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(_bits(restored[name]), _bits(tensor)), name


def test_a_killed_writers_leftover_is_removed_by_the_next_write(tmp_path):
    """scancel or SIGKILL leaves the temporary sibling behind; the next attempt drops it."""
    final = tmp_path / "job.zarr"
    leftover = tmp_path / "job.zarr.tmp-123-abcd"
    leftover.mkdir()
    (leftover / "zarr.json").write_text("{}")
    other = tmp_path / "other.zarr.tmp-9-ffff"
    other.mkdir()
    with atomic_group(final, {"k": 1}):
        pass
    assert final.is_dir() and not leftover.exists()
    assert other.exists(), "another output's temporary directory is not this job's to remove"
