"""Tests for paramdelta.train_job: the training job in one process, and as two DeepSpeed ranks
(gloo on the CPU) whose store must be the one-process store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from paramdelta import deltas, store, train_job
from paramdelta.config import defaults

REPO_DEEPSPEED_CONFIG = str(Path(__file__).resolve().parents[1] / "config" / "deepspeed_zero2.json")
KS = [1, 10, 50]
TOLERANCE = 1e-6
MAX_EPOCHS = 8

pytestmark = pytest.mark.usefixtures("single_thread")
pytest.importorskip("deepspeed")


@pytest.fixture(scope="module")
def dataset(three_texts) -> tuple[str, dict[str, int]]:
    return three_texts


@pytest.fixture(scope="module")
def deepspeed_configs(tmp_path_factory) -> dict[int, str]:
    """The repository's DeepSpeed JSON with small buckets, as ZeRO-2 and as ZeRO-3.

    DeepSpeed's default buckets hold 5e8 values, and a deterministic torch fills every new
    tensor (NaN): on the CPU that is seconds per step. The ZeRO-3 one partitions every
    parameter; ZeRO-3 by default keeps parameters below 1e5 values gathered all the time,
    which all of the tiny model's are.
    """
    with open(REPO_DEEPSPEED_CONFIG) as handle:
        config = json.load(handle)
    buckets = dict(reduce_bucket_size=100_000, allgather_bucket_size=100_000, stage3_prefetch_bucket_size=100_000)
    folder = tmp_path_factory.mktemp("deepspeed")
    paths = {}
    for stage, extra in ((2, {}), (3, {"stage3_param_persistence_threshold": 0})):
        config["zero_optimization"].update(stage=stage, **buckets, **extra)
        paths[stage] = folder / f"zero{stage}.json"
        paths[stage].write_text(json.dumps(config))
    return {stage: str(path) for stage, path in paths.items()}


def _spec(
    tiny_model_dir,
    dataset,
    output,
    *,
    budget="3",
    policy="delta",
    engine="deepspeed",
    deepspeed_config=None,
    zero_stage=None,
    threads=1,
) -> dict:
    table, labels = dataset
    return {
        "texts": list(labels),
        "dataset_table": table,
        "model_path": str(tiny_model_dir),
        "revision": None,
        "engine": engine,
        # The completed `train` section, as the workflow gives it. `es`: the loss falls by less
        # than min_delta at about epoch 6 of 8, so training stops (on every rank alike) before the cap.
        "train": defaults("train")
        | {
            "lr": 1e-3,
            "max_epochs": MAX_EPOCHS,
            "patience": 1,
            "min_delta": 0.1,
            "max_length": 24,
            "device": "cpu",
        },
        "deepspeed_config": deepspeed_config if engine == "deepspeed" else None,
        "zero_stage": zero_stage,
        "policy": policy,
        "snapshot_dtype": "float32",
        "ks": KS,
        "model": "tiny",
        "dataset": "demo",
        "budget": budget,
        "output": str(output),
        "threads": threads,
        "device": "cpu",
    }


def _compare(one: Path, two: Path, labels: dict[str, int]) -> float:
    """Check that two stores hold the same texts and statistics; the largest difference."""
    table1, texts1 = deltas.read_job_store(one, labels, KS)
    table2, texts2 = deltas.read_job_store(two, labels, KS)
    assert (texts1.status == "ok").all()
    for column in ("text_id", "status", "n_tokens", "n_chunks", "epochs_run", "best_epoch"):
        assert texts1[column].tolist() == texts2[column].tolist(), column
    for a, b in zip(texts1.losses, texts2.losses):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # (dot and base_sq are NaN in both where a delta store is read without the base snapshot.)
    numbers = ["l2", "sq", "dot", "base_sq"] + [f"topk_l2_{k}" for k in KS]
    assert table1.drop(columns=numbers).equals(table2.drop(columns=numbers))
    assert (table1.l2 > 0).all()  # training moved every layer
    assert table1[numbers].isna().equals(table2[numbers].isna())
    differences = [np.nan_to_num(np.abs(table1[c].to_numpy() - table2[c].to_numpy())).max() for c in numbers]
    root1, root2 = store.open_store(one), store.open_store(two)
    if root1.attrs["policy"] == "delta":
        for text_id in labels:
            a = store.read_tensors(root1[f"texts/{text_id}/params"])
            b = store.read_tensors(root2[f"texts/{text_id}/params"])
            differences += [(a[name] - b[name]).abs().max().item() for name in a]
    return max(differences)


# ZeRO-2 with early stopping and a sketch store, ZeRO-3 with a fixed budget and a delta store:
# between them every stage, budget kind and store kind (a ZeRO-2 fixed-budget case added 30 s,
# early stopping in the gathered ZeRO-3 case 20 s).
@pytest.mark.parametrize(
    "stage, zero_stage, budget, policy",
    [(2, None, "es", "sketch"), (3, None, "3", "delta"), (2, 3, "3", "sketch")],
    ids=["zero2-es", "zero3-partitioned-fixed", "zero3-gathered-fixed"],
)
def test_two_processes_match_one(
    tiny_model_dir, dataset, deepspeed_configs, tmp_path, stage, zero_stage, budget, policy
):
    """Two ranks write the store of one process, which is the plain PyTorch engine's: three
    texts in a row, so each one's exact restore of the base is checked too. ZeRO-3 both with
    every parameter partitioned and with the model's `zero_stage: 3` on the ZeRO-2 JSON, which
    keeps the tiny model's parameters gathered."""
    kwargs = dict(budget=budget, policy=policy, deepspeed_config=deepspeed_configs[stage], zero_stage=zero_stage)
    reference, one, two = tmp_path / "torch.zarr", tmp_path / "one.zarr", tmp_path / "two.zarr"
    train_job.launch(_spec(tiny_model_dir, dataset, reference, budget=budget, policy=policy, engine="torch"), 1)
    started = time.perf_counter()
    train_job.launch(_spec(tiny_model_dir, dataset, one, **kwargs), 1)
    middle = time.perf_counter()
    train_job.launch(_spec(tiny_model_dir, dataset, two, threads=2, **kwargs), 2, log_path=str(tmp_path / "two.log"))
    ended = time.perf_counter()
    assert [store.open_store(path).attrs["world_size"] for path in (reference, one, two)] == [1, 1, 2]
    from_torch, from_one = _compare(reference, one, dataset[1]), _compare(one, two, dataset[1])
    print(
        f"ZeRO-{zero_stage or stage} budget {budget}: max |torch - 1 process| = {from_torch:.3g}, "
        f"|1 - 2 processes| = {from_one:.3g}; {middle - started:.1f} s in process, {ended - middle:.1f} s with 2"
    )
    assert from_torch < TOLERANCE and from_one < TOLERANCE
    epochs = deltas.read_job_store(two, dataset[1], KS)[1].epochs_run
    assert (epochs < MAX_EPOCHS).all() if budget == "es" else (epochs == int(budget)).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.zarr", "torch.zarr", "two.log", "two.zarr"]


def test_two_processes_replay_the_best_epoch_to_the_state_they_keep(
    tiny_model_dir, dataset, deepspeed_configs, tmp_path
):
    """Early stopping that trains again to its best epoch (train.best_state replay) on two ZeRO-2
    ranks, whose replays, evaluations and gathers are collectives made alike on both: the store
    that keeping each best state writes, bit for bit. An lr this high, held constant, makes the
    loss rise again after its best epoch, so there is something to replay."""
    stores = {}
    for best_state in ("keep", "replay"):
        stores[best_state] = tmp_path / f"{best_state}.zarr"
        spec = _spec(tiny_model_dir, dataset, stores[best_state], budget="es", deepspeed_config=deepspeed_configs[2])
        spec["train"] |= {"lr": 0.3, "schedule": "constant", "patience": 2, "min_delta": 0.0, "max_epochs": 12}
        spec["train"]["best_state"] = best_state
        train_job.launch(spec, 2, log_path=str(tmp_path / f"{best_state}.log"))
    assert _compare(stores["keep"], stores["replay"], dataset[1]) == 0
    replay = stores["replay"]
    texts = deltas.read_job_store(replay, dataset[1], KS)[1]
    replayed = texts.best_epoch < texts.epochs_run
    assert replayed.any() and texts.replay_exact[replayed].tolist() == [True] * replayed.sum()


SITECUSTOMIZE = """
import os

if os.environ.get("RANK") == "1":
    import paramdelta.train

    real, calls = paramdelta.train.run_text, []

    def run_text(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # rank 0 has written the first text into its temporary store
            raise RuntimeError("injected failure of rank 1")
        return real(*args, **kwargs)

    paramdelta.train.run_text = run_text
"""


def test_a_failing_rank_fails_the_launch_and_leaves_no_store(
    tiny_model_dir, dataset, deepspeed_configs, tmp_path, monkeypatch
):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(hooks))
    output, log = tmp_path / "out" / "shard.zarr", tmp_path / "job.log"
    spec = _spec(tiny_model_dir, dataset, output, deepspeed_config=deepspeed_configs[2], threads=2)
    # The error names the rank's exception, so a failure in CI or in a SLURM log explains itself.
    with pytest.raises(
        RuntimeError,
        match=r"exited with code \d+ after rank 1's RuntimeError: injected failure of rank 1; see .*job\.log",
    ):
        train_job.launch(spec, 2, log_path=str(log))
    assert "injected failure of rank 1" in log.read_text()
    assert list(output.parent.iterdir()) == []  # no store, no temporary store, no spec


TORCHRUN_SUMMARY = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
paramdelta.train_job FAILED
------------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 1665)  (SIGTERM)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_02:19:19
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : %s (pid: 1666) %s
  error_file: <N/A>
============================================================
"""


def test_a_launch_failure_names_its_cause_from_the_log(tmp_path):
    """The exception a rank printed (torch prefixes its lines with the rank), else torchrun's
    root cause: a rank killed by a signal prints no exception. Only what this launch appended
    to the log counts."""
    log = tmp_path / "job.log"
    log.write_text("[rank0]: ValueError: an earlier launch's failure\n")
    start = log.stat().st_size
    with log.open("a") as stream:
        stream.write("2026-12-07 rank 0 INFO paramdelta.train_job: text t0: 3 epochs\n")
        stream.write(TORCHRUN_SUMMARY % ("-11", " (SIGSEGV)"))
    assert train_job._first_error(str(log), start) == "rank 1 exited with code -11 (SIGSEGV)"
    assert train_job._first_error(str(log), 0) == "rank 0's ValueError: an earlier launch's failure"
    with log.open("a") as stream:
        stream.write(TORCHRUN_SUMMARY % ("1", ""))
    end = log.stat().st_size
    with log.open("a") as stream:
        stream.write("[rank1]: Traceback (most recent call last):\n[rank1]: torch.distributed.DistBackendError: gloo\n")
        stream.write(TORCHRUN_SUMMARY % ("1", ""))
    assert train_job._first_error(str(log), end) == "rank 1's torch.distributed.DistBackendError: gloo"
    assert train_job._first_error(str(tmp_path / "missing.log"), 0) is None


def test_torch_engine_refuses_several_processes(tiny_model_dir, dataset, tmp_path):
    spec = _spec(tiny_model_dir, dataset, tmp_path / "out.zarr", engine="torch")
    with pytest.raises(ValueError, match="needs the deepspeed engine"):
        train_job.launch(spec, 2)
    assert list(tmp_path.iterdir()) == []


def test_a_launch_with_fewer_gpus_than_processes_says_so(tiny_model_dir, dataset, tmp_path, monkeypatch):
    """Two ranks, one a GPU, on a node where the job sees one GPU (SLURM split its GPUs): refused
    before any rank starts, naming the count."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    spec = _spec(tiny_model_dir, dataset, tmp_path / "two.zarr", deepspeed_config="zero2.json")
    with pytest.raises(RuntimeError, match=r"2 processes, one a GPU, but this job sees 1 GPU"):
        train_job.launch({**spec, "device": "cuda"}, 2)
    assert not (tmp_path / "two.zarr").exists()


def test_a_job_out_of_memory_says_what_needs_less_and_leaves_no_store(tiny_model_dir, dataset, tmp_path, monkeypatch):
    """A device out of memory in the middle of a job (here the second text's step): the job
    fails naming the model, where it ran out and the settings that need less, and leaves no
    store. On a GPU it says that a retry, which only asks for more host memory, would fail too."""
    from paramdelta import train

    steps = train.TorchEngine.step
    calls = []

    def step(self, input_ids, lr):
        calls.append(1)
        if len(calls) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return steps(self, input_ids, lr)

    monkeypatch.setattr(train.TorchEngine, "step", step)
    spec = _spec(tiny_model_dir, dataset, tmp_path / "out.zarr", engine="torch")
    with pytest.raises(RuntimeError, match=r"training job of tiny \(torch engine.*ran out of host memory") as failure:
        train_job.launch(spec, 1)
    assert "models.tiny.mem_mb" in str(failure.value)
    assert isinstance(failure.value.__cause__, torch.OutOfMemoryError)
    assert list(tmp_path.iterdir()) == []

    # The message on a GPU (the device's numbers faked: none here).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 83.1e9)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 85.0e9}))
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore lines")
    torch_engine = train_job.out_of_memory({**spec, "device": "cuda"}, error)
    assert "ran out of GPU memory (83.1 GB allocated at the peak, of 85.0 GB): CUDA out of memory." in torch_engine
    assert "A retry would fail the same way" in torch_engine and "models.tiny.gpus: 2" in torch_engine
    assert "more lines" not in torch_engine
    monkeypatch.setenv("WORLD_SIZE", "2")
    zero2 = train_job.out_of_memory({**spec, "device": "cuda", "engine": "deepspeed"}, error)
    assert "more GPUs a job (models.tiny.gpus, now 2)" in zero2 and "models.tiny.zero_stage: 3" in zero2
    assert "deepspeed_zero2_offload.json" in zero2


def test_spec_keys_are_checked(tiny_model_dir, dataset, tmp_path):
    spec = _spec(tiny_model_dir, dataset, tmp_path / "out.zarr", deepspeed_config="zero2.json")
    with pytest.raises(ValueError, match=r"missing keys \['texts'\], unknown keys \['text'\]"):
        train_job.launch({**{k: v for k, v in spec.items() if k != "texts"}, "text": []}, 1)
    with pytest.raises(ValueError, match="needs a deepspeed_config"):
        train_job.launch({**spec, "deepspeed_config": None}, 1)


def test_one_process_store_attributes(tiny_model_dir, dataset, tmp_path):
    """The torch engine in this process: the store the workflow's deltas rule reads."""
    output = tmp_path / "torch.zarr"
    train_job.launch(_spec(tiny_model_dir, dataset, output, engine="torch", policy="sketch"), 1)
    attrs = store.open_store(output).attrs.asdict()
    expected = {
        "kind",
        "policy",
        "model",
        "model_path",
        "revision",
        "dataset",
        "budget",
        "engine",
        "seed",
        "train",
        "ks",
        "layers",
        "texts",
        "device",
        "world_size",
        "provenance",
        "records",
    }
    assert set(attrs) == expected
    assert attrs["world_size"] == 1 and attrs["engine"] == "torch" and attrs["device"] == "cpu"
    table, texts = deltas.read_job_store(output, dataset[1], KS)
    assert (texts.epochs_run == 3).all() and len(table) == len(attrs["layers"]) * len(dataset[1])
    assert torch.get_num_threads() == 1


def test_a_texts_state_is_dropped_before_the_next_text_trains(tiny_model_dir, dataset, tmp_path, monkeypatch):
    """Early stopping's best state (a copy on the device where one fits) must not outlive its
    text: the next text makes its own, and two would not fit where one just does."""
    import gc
    import weakref

    from paramdelta import train

    real, kept = train.run_text, []

    def run_text(*args, **kwargs):
        gc.collect()
        assert all(ref() is None for ref in kept), "an earlier text's state is still alive"
        run = real(*args, **kwargs)
        kept.append(weakref.ref(next(iter(run.after.values()))))
        return run

    monkeypatch.setattr(train, "run_text", run_text)
    train_job.launch(_spec(tiny_model_dir, dataset, tmp_path / "delta.zarr", budget="es", engine="torch"), 1)
    assert len(kept) == len(dataset[1])


def test_a_delta_record_is_made_one_tensor_at_a_time(tiny_model_dir, dataset, tmp_path, monkeypatch):
    """The delta a record stores is computed tensor by tensor as the store writes it: at 7B a
    whole second copy beside the state would be 28 GB more of the job's host memory."""
    import weakref

    from paramdelta import store

    real, seen = store.write_tensors, []

    def write_tensors(group, tensors, **kwargs):
        def watched():
            previous = None
            for name, tensor in tensors.items() if isinstance(tensors, dict) else tensors:
                # Freed by its reference count as soon as nothing holds it (no collection needed).
                assert previous is None or previous() is None, "the previous tensor's delta is still alive"
                seen.append(name)
                yield name, tensor
                previous = weakref.ref(tensor)
                del tensor

        real(group, watched(), **kwargs)

    monkeypatch.setattr(store, "write_tensors", write_tensors)
    output = tmp_path / "delta.zarr"
    train_job.launch(_spec(tiny_model_dir, dataset, output, budget="2", engine="torch"), 1)
    assert len(seen) > len(dataset[1])
    table, texts = deltas.read_job_store(output, dataset[1], KS)
    assert (texts.status == "ok").all() and table["l2"].gt(0).all()


def test_deterministic_sets_the_cublas_workspace_and_keeps_a_users(monkeypatch):
    """cuBLAS is deterministic only with a fixed workspace, read from the environment at its
    first call: the job sets one unless the user did."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    train_job.deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    train_job.deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.parametrize("policy", ["sketch", "delta"])
@pytest.mark.parametrize("budget", ["2", "es"])
def test_texts_side_by_side_give_the_job_store_of_one_at_a_time(tiny_model_dir, dataset, tmp_path, policy, budget):
    """train.parallel_texts: the same delta table and per-text records as one text at a time
    (to float rounding), and the same store layout."""
    outputs, trajectories = {}, {}
    for width in (1, 2):
        spec = _spec(tiny_model_dir, dataset, tmp_path / f"{width}.zarr", engine="torch", policy=policy, budget=budget)
        spec["train"]["parallel_texts"] = width
        spec["trajectory"] = True
        train_job.launch(spec, 1)
        outputs[width] = deltas.read_job_store(spec["output"], dataset[1], KS)
        trajectories[width] = deltas.read_trajectory(spec["output"], dataset[1])
    (table1, texts1), (table2, texts2) = outputs[1], outputs[2]
    # The per-epoch trajectory too, one row per (text, epoch run, layer).
    assert len(trajectories[1]) == texts1.epochs_run.sum() * table1.layer.nunique()
    pd.testing.assert_frame_equal(trajectories[1], trajectories[2], check_exact=False, atol=1e-7, rtol=1e-5)
    # <base, delta> sums terms of both signs: its rounding is that of the largest of them.
    pd.testing.assert_frame_equal(
        table1.drop(columns="dot"), table2.drop(columns="dot"), check_exact=False, atol=1e-7, rtol=1e-5
    )
    np.testing.assert_allclose(table1["dot"], table2["dot"], atol=1e-6, rtol=1e-5)
    columns = ["text_id", "status", "n_tokens", "n_chunks", "epochs_run", "best_epoch"]
    pd.testing.assert_frame_equal(texts1[columns], texts2[columns])
    assert np.allclose(np.concatenate(texts1.losses.tolist()), np.concatenate(texts2.losses.tolist()), rtol=1e-5)


@pytest.mark.parametrize("budget", ["2", "es"])
def test_same_seed_same_bits_and_text_order_does_not_matter(tiny_model_dir, dataset, tmp_path, budget):
    """Two runs with one seed give the same delta table and records bit for bit (CPU), and a
    job given its texts in another order gives every text the same result, bit for bit."""
    table_path, labels = dataset
    runs = {}
    for name, order in (("first", list(labels)), ("again", list(labels)), ("reversed", list(labels)[::-1])):
        spec = _spec(tiny_model_dir, dataset, tmp_path / f"{name}.zarr", engine="torch", policy="sketch", budget=budget)
        spec["texts"] = order
        train_job.launch(spec, 1)
        table, texts = deltas.read_job_store(spec["output"], labels, KS)
        runs[name] = (
            table.sort_values(["text_id", "layer_index"], ignore_index=True),
            texts.drop(columns="seconds").sort_values("text_id", ignore_index=True),
        )
    for name in ("again", "reversed"):
        pd.testing.assert_frame_equal(runs["first"][0], runs[name][0], check_exact=True)
        pd.testing.assert_frame_equal(runs["first"][1], runs[name][1], check_exact=True)
    assert (runs["first"][0]["l2"] > 0).all()
