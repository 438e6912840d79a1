"""The prepared GPU benchmark (benchmarks/bench_gpu.py) runs every set-up end to end on a CPU with
a tiny model, so that a lent GPU's few minutes are not spent finding a crash."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_setup_runs_on_a_cpu(tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "bench_gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--models", "tiny"]
        + ["--steps", "2", "--texts", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["setup"]: row for row in json.loads(out.read_text())["rows"]}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_gpu import SETUPS

    assert set(rows) == set(SETUPS)
    # P2's baseline needs the Trainer's accelerate, which only the benchmarks' environment installs.
    trainer = importlib.util.find_spec("accelerate") is not None
    for setup, row in rows.items():
        if setup == "thesis-bf16" and not trainer:
            assert "needs accelerate" in row["skipped"]
            continue
        assert "error" not in row and "skipped" not in row, (setup, row)
        if setup == "job-bf16":  # the training job's entry point, a store written
            assert row["job_start_s"] > 0 and row["job_text_s"] > 0
            # its peak host memory beside estimate.host_memory's count of its tensors
            assert row["job_peak_rss_bytes"] > row["host_counted_bytes"] > 0
            continue
        if setup == "thesis-bf16":  # P2's baseline: a Trainer per text, its checkpoints
            assert row["thesis_text_s"] > 0 and row["thesis_first_s"] > 0
            continue
        assert row["text_s"] > 0
        if row["width"] == 1:  # a step, and what a job does around the steps of a text
            assert all(row[key] > 0 for key in ("step_s", "restore_s", "stats_s", "eval_s", "digest_s")), setup
            assert row["repeatable"] is True, setup  # a CPU trains bit for bit alike
    assert "texts side by side" in done.stdout and "fastest measured for tiny" in done.stdout
    assert "host memory: peak RSS" in done.stdout and "process_host_bytes" in done.stdout
    assert "for the replay's digest of the state" in done.stdout
    assert ("P2 (tiny): thesis-style" in done.stdout) is trainer
