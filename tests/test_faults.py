"""Faults: a job killed outright at each of its phases, and a full disk.

A training job (paramdelta.train_job.run) and a reduction (deltas.read_job_store, then the
delta table written as rules/deltas.smk's script writes it) run in a child process that
SIGKILLs itself at a chosen phase: no handler, no cleanup, as `scancel -s KILL` or the
out-of-memory killer would end it. Nothing it leaves may look complete, and a rerun must
give exactly what an uninterrupted run gives. tests/test_workflow.py kills a training job
under Snakemake itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from paramdelta import deltas, train_job
from paramdelta.config import defaults

KS = [1, 10]

# The child: patches the function that marks the phase so that it kills the process there.
DRIVER = """
import json, os, signal, sys
spec, phase = json.load(open(sys.argv[1])), sys.argv[2]
from paramdelta import atomic, deltas, models, store, train, train_job

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def after(function, calls):
    seen = []
    def wrapped(*args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            die()
        return function(*args, **kwargs)
    return wrapped

if phase == "model load":
    models.load_with_tokenizer = die
elif phase == "training":
    train.run_text = after(train.run_text, 2)  # in the second text
elif phase == "store write":
    original = store.write_arrays
    def write_then_die(*args, **kwargs):
        original(*args, **kwargs)  # the job's arrays are on disk, the store not yet renamed
        die()
    store.write_arrays = write_then_die
if phase in ("model load", "training", "store write"):
    train_job.run(spec)
else:  # a reduction
    import pandas as pd
    if phase == "store read":
        store.read_arrays = die
    table, _ = deltas.read_job_store(spec["output"], spec["labels"], spec["ks"])
    if phase == "table write":
        original = pd.DataFrame.to_parquet
        def write_then_die(self, *args, **kwargs):
            original(self, *args, **kwargs)  # the table is written under its temporary name
            die()
        pd.DataFrame.to_parquet = write_then_die
    atomic.write_parquet(table, spec["table"])
"""


@pytest.fixture(scope="module")
def dataset(three_texts) -> tuple[str, dict[str, int]]:
    return three_texts


def _spec(tiny_model_dir, dataset, output: Path, policy: str = "sketch") -> dict:
    table, labels = dataset
    return {
        "texts": list(labels),
        "dataset_table": table,
        "model_path": str(tiny_model_dir),
        "revision": None,
        "engine": "torch",
        "train": defaults("train") | {"lr": 1e-3, "max_length": 24, "device": "cpu"},  # completed, as the workflow's
        "deepspeed_config": None,
        "zero_stage": None,
        "policy": policy,
        "snapshot_dtype": "float32",
        "ks": KS,
        "model": "tiny",
        "dataset": "demo",
        "budget": "2",
        "output": str(output),
        "threads": 1,
        "device": "cpu",
    }


def _run_child(spec: dict, phase: str, tmp_path: Path) -> int:
    path = tmp_path / f"spec-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-c", DRIVER, str(path), phase], cwd=tmp_path, capture_output=True
    ).returncode


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name) if folder.exists() else []


@pytest.fixture(scope="module")
def clean_run(tiny_model_dir, dataset, tmp_path_factory):
    """An uninterrupted job: its store, and the delta table and records read from it."""
    folder = tmp_path_factory.mktemp("clean")
    spec = _spec(tiny_model_dir, dataset, folder / "job.zarr")
    train_job.run(spec)
    return (spec["output"], *deltas.read_job_store(spec["output"], dataset[1], KS))


@pytest.mark.parametrize("phase", ["model load", "training", "store write"])
def test_training_job_killed_at_each_phase(tiny_model_dir, dataset, tmp_path, clean_run, phase):
    folder = tmp_path / "train"
    spec = _spec(tiny_model_dir, dataset, folder / "job.zarr")
    assert _run_child(spec, phase, tmp_path) == -signal.SIGKILL
    assert not Path(spec["output"]).exists(), "a killed job left a store that looks complete"
    if phase == "store write":
        assert _leftovers(folder), (
            "the kill came before the store was written"
        )  # the fault was where it was meant to be
    train_job.run(spec)  # the rerun
    assert not _leftovers(folder)  # the killed attempt's temporary store is gone
    table, texts = deltas.read_job_store(spec["output"], dataset[1], KS)
    pd.testing.assert_frame_equal(table, clean_run[1], check_exact=True)
    pd.testing.assert_frame_equal(texts.drop(columns="seconds"), clean_run[2].drop(columns="seconds"), check_exact=True)


@pytest.mark.parametrize("phase", ["store read", "table write"])
def test_reduction_killed_at_each_phase(tiny_model_dir, dataset, tmp_path, clean_run, phase):
    from paramdelta.atomic import write_parquet

    folder = tmp_path / "reduce"
    spec = _spec(tiny_model_dir, dataset, clean_run[0]) | {
        "labels": dataset[1],
        "table": str(folder / "deltas.parquet"),
    }
    assert _run_child(spec, phase, tmp_path) == -signal.SIGKILL
    assert not Path(spec["table"]).exists(), "a killed reduction left a table that looks complete"
    if phase == "table write":
        assert _leftovers(folder), "the kill came before the table was written"
    table, _ = deltas.read_job_store(spec["output"], dataset[1], KS)  # the rerun, as rules/deltas.smk's script
    write_parquet(table, spec["table"])
    assert sorted(p.name for p in folder.iterdir()) == ["deltas.parquet"]  # the killed attempt's file is gone
    pd.testing.assert_frame_equal(pd.read_parquet(spec["table"]), clean_run[1], check_exact=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: a disk that fills while a job writes (needs root to mount)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk case is not checked on this machine")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_fails_the_job_clearly_and_leaves_nothing(tiny_model_dir, dataset, small_disk):
    spec = _spec(tiny_model_dir, dataset, small_disk / "job.zarr", policy="delta")  # a few MB of deltas
    with pytest.raises(OSError) as caught:
        train_job.run(spec)
    message = str(caught.value)
    assert "disk full" in message and str(small_disk / "job.zarr") in message, message
    assert list(small_disk.iterdir()) == []  # nothing partial, and the space is free again


def test_full_disk_fails_a_table_write_clearly_and_leaves_nothing(small_disk):
    from paramdelta.atomic import write_parquet

    table = pd.DataFrame({"value": range(200_000), "name": [f"text {i}" for i in range(200_000)]})  # ~2 MB
    with pytest.raises(OSError, match="disk full while writing .*deltas.parquet"):
        write_parquet(table, small_disk / "deltas.parquet")
    assert list(small_disk.iterdir()) == []


def test_a_nan_forced_by_a_huge_lr_is_recorded_counted_and_never_scored(tiny_model_dir, dataset, tmp_path):
    """One text of a (model, budget) trained with a learning rate that blows it up: its run
    is recorded as failed with the epoch, it has no delta rows (so no score of the method),
    and the metrics count it in n_failed beside the AUROC of the texts that did train."""
    from paramdelta import features, metrics

    labels = dataset[1]
    ids = list(labels)
    good = _spec(tiny_model_dir, dataset, tmp_path / "good.zarr") | {"texts": ids[:2]}
    bad = _spec(tiny_model_dir, dataset, tmp_path / "bad.zarr") | {"texts": ids[2:]}
    bad["train"] = bad["train"] | {
        "optimizer": "sgd",
        "lr": 1e6,
        "grad_clip": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
    }
    train_job.run(good)
    train_job.run(bad)
    read = [deltas.read_job_store(spec["output"], labels, KS) for spec in (good, bad)]
    table = pd.concat([one[0] for one in read], ignore_index=True)
    texts = pd.concat([one[1] for one in read], ignore_index=True)  # as rules/deltas.smk's script joins them

    failed = texts[texts["status"] == "failed"]
    assert failed["text_id"].tolist() == ids[2:]
    assert failed["failed_epoch"].between(1, 2).all() and failed["failure"].str.contains("non-finite").all()
    assert set(table["text_id"]) == set(ids[:2])  # no delta rows: the method cannot score it

    scores = features.score_table(features.normalise(table), ["all"], KS).assign(
        dataset="demo", model="tiny", budget="2"
    )
    row = metrics.metrics_table(scores, texts, n_boot=10).iloc[0]
    assert row["n_failed"] == 1 and row["n_members"] + row["n_nonmembers"] == 2
