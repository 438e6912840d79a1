"""The workflow through a real SLURM scheduler: `snakemake --profile slurm` with
snakemake-executor-plugin-slurm against a one-node cluster of Debian's slurmctld, slurmd
and munge (slurm/local-cluster.sh), started for this module and stopped after it.

It needs root and the Debian packages; `make test` installs them where it can. Elsewhere
the module is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "slurm" / "local-cluster.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
# The local cluster has no accounting daemon: job states come from squeue, there is no
# account to charge, and status checks can start at once.
LOCAL_CLUSTER_FLAGS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
]

pytestmark = pytest.mark.slow


def _why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (slurmd starts the jobs)"
    missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(tool)]
    if missing:
        return (
            f"{', '.join(missing)} not installed: run `slurm/local-cluster.sh install` (Debian's slurm-wlm and munge)"
        )
    return None


@pytest.fixture(scope="module")
def cluster():
    """Environment of a running one-node SLURM cluster (SLURM_CONF set)."""
    reason = _why_no_cluster()
    if reason:
        pytest.skip(reason)
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not start:\n{started.stdout}\n{started.stderr}")
    conf = re.search(r"export SLURM_CONF=(\S+)", started.stdout).group(1)
    env = {**os.environ, "SLURM_CONF": conf}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    yield env
    subprocess.run([str(CLUSTER), "stop"], capture_output=True, text=True)


def small_config(path: Path) -> Path:
    """A controlled target with every kind of model job: build, snapshot, train, log-prob, SaMIA."""
    config = {
        "datasets": {
            "mini": {
                "controlled": {"corpus": {"generator": "templates", "n_documents": 120, "seed": 1}, "candidates": 12}
            }
        },
        "models": {
            "neox": {
                "build": {
                    "dataset": "mini",
                    "arch": "gpt-neox",
                    "hidden_size": 32,
                    "num_layers": 1,
                    "intermediate_size": 64,
                    "vocab_size": 300,
                    "base_epochs": 1,
                    "target_epochs": 1,
                },
                "cpus": 1,
                "mem_mb": 2000,
                "runtime": 20,
            }
        },
        "budgets": [10],  # 10 epochs a text: a training job long enough to be cancelled while it writes
        "texts_per_job": 6,
        "features": {"k": [1, 5]},
        "attacks": ["loss", "mink", "samia", "blind"],
        "baselines": {"k": [10, 20], "samia": {"n_samples": 2, "texts_per_job": 12}, "blind": {"folds": 2}},
        "metrics": {"bootstrap": 100},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run(workdir: Path, config: Path, *args: str, env: dict | None = None, check: bool = True):
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
# The rules that run on the submitting node; everything else must go through sbatch.
LOCAL_RULES = {"dataset", "controlled_corpus", "blind", "baseline_scores", "scores", "metrics", "report", "all"}


def submitted_jobs(output: str) -> dict[str, str]:
    """SLURM job id -> its log file, from Snakemake's own log."""
    return {job: log for job, log in SUBMITTED.findall(output)}


def comparable_report(path: Path) -> str:
    """The report's page without what differs between two runs of the same results:
    times, run ids, paths, the compute-time section and the cost column of "what works"."""
    html = path.read_text()
    html = re.sub(r'<section id="summary"[\s\S]*?</section>', "", html)

    def without_costs(section: re.Match) -> str:  # the cell before the last ("learns from labels")
        return re.sub(r"<td>[^<]*</td>(<td>(?:yes|no)</td></tr>)", r"<td>COST</td>\1", section.group(0))

    html = re.sub(r'<section id="what-works"[\s\S]*?</section>', without_costs, html)
    html = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?", "TIME", html)
    return html


def test_workflow_through_slurm_equals_local_run_and_survives_scancel(cluster, tmp_path, request):
    config = small_config(tmp_path / "small.yaml")

    # The local run, to compare with, runs beside the SLURM run: that one spends most of its time
    # waiting on the scheduler, and the two together take a minute less than one after the other.
    local = tmp_path / "local"
    local.mkdir()
    local_run = subprocess.Popen(
        [*SNAKEMAKE, "--directory", str(local), "--configfile", str(config), "--cores", "1"],
        cwd=local,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    request.addfinalizer(lambda: local_run.poll() is None and local_run.kill())

    workdir = tmp_path / "slurm"
    shutil.copytree(ROOT / "slurm", workdir / "slurm")
    command = [
        *SNAKEMAKE,
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--profile",
        "slurm",
        *LOCAL_CLUSTER_FLAGS,
        "--retries",
        "0",
        "--jobs",
        "4",
    ]
    first = subprocess.Popen(
        command, cwd=workdir, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # Cancel a training job while it is writing its store. A job trains its texts in well under a
    # second here: the store's temporary sibling is looked for every 20 ms, and the scheduler asked
    # only once one is there.
    cancelled, deadline = [], time.time() + 600
    try:
        while time.time() < deadline and first.poll() is None:
            if list((workdir / "results" / "train").rglob("*.zarr.tmp-*")):
                running = subprocess.run(
                    ["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True, env=cluster
                ).stdout.split("\n")
                train_jobs = [line.split()[0] for line in running if "rule_train_" in line]
                if train_jobs:
                    subprocess.run(["scancel", *train_jobs], check=True, env=cluster)
                    cancelled = train_jobs
                    break
            time.sleep(0.02)
        output, _ = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
    assert cancelled, f"no training job was seen running:\n{output[-3000:]}"
    assert first.returncode != 0, "a run with a cancelled job must fail"
    jobs = submitted_jobs(output)
    assert jobs and set(cancelled) <= set(jobs), (cancelled, jobs)
    states = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(cancelled), "-o", "%T"],
        capture_output=True,
        text=True,
        env=cluster,
    ).stdout.split()
    assert set(states) == {"CANCELLED"}, states
    # Nothing of the cancelled job looks complete, and nothing downstream was made from it.
    for job in cancelled:
        dataset, model, optimizer, budget, shard = re.search(r"rule_train/([^/]+)/", jobs[job]).group(1).split("_")
        assert not (workdir / "results" / "train" / dataset / model / optimizer / budget / f"{shard}.zarr").exists()
    assert not (workdir / "results" / "metrics.csv").exists()

    # The rerun redoes what was cancelled, through sbatch again, and finishes.
    rerun = run(workdir, config, "--profile", "slurm", *LOCAL_CLUSTER_FLAGS, "--jobs", "4", env=cluster)
    rerun_jobs = submitted_jobs(rerun.stdout + rerun.stderr)
    assert rerun_jobs, "the rerun submitted nothing"
    assert "rule_train" in " ".join(rerun_jobs.values())
    assert not list((workdir / "results").rglob("*.tmp-*")), "a temporary output was left behind"

    # Every job that is not a local rule went through sbatch: its SLURM log is named by its job id.
    all_jobs = {**jobs, **rerun_jobs}
    for job, log in all_jobs.items():
        assert Path(log).name == f"{job}.log" and Path(log).exists(), (job, log)
    ran_on_slurm = {re.search(r"rule_(\w+?)/", log).group(1) for log in all_jobs.values()}
    assert ran_on_slurm == {
        "base_model",
        "target_model",
        "base_snapshot",
        "train",
        "deltas",
        "logprob_scores",
        "samia",
    }, ran_on_slurm
    assert not ran_on_slurm & LOCAL_RULES

    # The same results as the local run.
    local_output, _ = local_run.communicate(timeout=900)
    assert local_run.returncode == 0, f"the local run failed:\n{local_output[-4000:]}"
    for table in ("metrics.csv", "ttest.csv", "correlation.csv", "topk_cv.csv"):
        assert (workdir / "results" / table).read_text() == (local / "results" / table).read_text(), table
    for scores in sorted((local / "results" / "scores").rglob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(scores), pd.read_parquet(workdir / scores.relative_to(local)))
    assert comparable_report(workdir / "results" / "report" / "index.html") == comparable_report(
        local / "results" / "report" / "index.html"
    )
    assert "Nothing to be done" in run(workdir, config, "-n", env=cluster).stdout


def test_sbatch_lines_of_the_cluster_config(cluster, tmp_path):
    """What the plugin asks SLURM for, for config/wikimia.yaml: every job that runs a 6-7B model
    asks for its GPUs, GPU type, partition, CPUs, memory and time; the CPU job asks for no GPU.

    The local cluster has no GPU or `gpu` partition, so sbatch refuses these jobs: the lines
    are real sbatch calls, shown by the plugin with its refusal."""
    from paramdelta import data

    workdir = tmp_path / "cluster"
    shutil.copytree(ROOT / "slurm", workdir / "slurm")
    cache = workdir / data.hub_cache_path("swj0419/WikiMIA", "WikiMIA_length32")
    cache.parent.mkdir(parents=True)
    rows = [{"input": f"Candidate text number {i} about topic {i % 7}.", "label": i % 2} for i in range(60)]
    pd.DataFrame(rows).to_parquet(cache)
    config = yaml.safe_load((ROOT / "config" / "wikimia.yaml").read_text())
    # What the fetch_model rule leaves (the weights are never loaded: sbatch refuses the jobs).
    for model in config["models"]:
        record = workdir / "results" / "hub" / f"{model}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    shard = next(iter(data.shards([data.text_id(row["input"]) for row in rows], config["texts_per_job"])))
    targets = [
        path
        for model in config["models"]
        for path in (
            f"results/train/wikimia32/{model}/default/5/{shard}.zarr",
            f"results/baselines/wikimia32/{model}/logprob.parquet",
            f"results/snapshots/{model}/base.zarr",
        )
    ]
    result = run(
        workdir,
        ROOT / "config" / "wikimia.yaml",
        "--profile",
        "slurm",
        *LOCAL_CLUSTER_FLAGS,
        "--verbose",
        *targets,
        env=cluster,
        check=False,
    )
    calls = re.findall(r"sbatch call: (sbatch .*?) --wrap=", result.stdout + result.stderr)
    attempts: dict[str, list[str]] = {}
    for call in calls:
        attempts.setdefault(re.search(r"--comment (\S+)", call).group(1), []).append(call)
    by_job = {job: tries[0] for job, tries in attempts.items()}
    print("\n".join(f"{job}:\n    {call}" for job, call in sorted(by_job.items())))
    # The profile's retry asks for twice the memory and time (rules/common.smk).
    for job, tries in attempts.items():
        assert len(tries) == 2, (job, tries)
        first, second = (int(re.search(r"--mem (\d+)", call).group(1)) for call in tries)
        assert second == 2 * first
        first, second = (int(re.search(r" -t (\d+)", call).group(1)) for call in tries)
        assert second == 2 * first
    for model, spec in config["models"].items():
        train = by_job[f"rule_train_wildcards_wikimia32_{model}_default_5_{shard}"]
        assert f"--gpus={spec['gpu_model']}:{spec['gpus']}" in train and "--nodes=1" in train
        assert f"-p {spec['partition']}" in train and f"--mem {spec['mem_mb']}" in train
        assert f"--cpus-per-task={spec['cpus']}" in train and f"-t {spec['runtime']}" in train
        logprob = by_job[f"rule_logprob_scores_wildcards_wikimia32_{model}"]
        assert f"--gpus={spec['gpu_model']}:1" in logprob and f"-p {spec['partition']}" in logprob
        snapshot = by_job[f"rule_base_snapshot_wildcards_{model}"]
        assert "--gpus" not in snapshot and "-p gpu" not in snapshot and f"--mem {spec['mem_mb']}" in snapshot
        assert "--nodes" not in snapshot
    assert (
        "Invalid generic resource" in result.stdout + result.stderr
        or "invalid partition" in (result.stdout + result.stderr).lower()
    )
