"""The workflow as a user runs it: the demo end to end, reruns, a new model, a killed job,
bad configuration, and planning the cluster experiment with the SLURM profile."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
import zarr

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
# The param-delta rows of every (model, setting, budget): each layer selection, and the
# distances over all layers (features.distances).
SELECTIONS = (
    *("all", "attention", "mlp", "norm", "embedding", "topk-elements", "topk-layers"),
    *("cosine", "relative", "mahalanobis", "pca", "random-projection"),
)
# The demo records the per-epoch trajectory (snapshots.trajectory): its features too.
TRAJECTORY_SELECTIONS = ("trajectory-area", "trajectory-slope", "trajectory-peak")

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, config: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = [
        *SNAKEMAKE,
        "--directory",
        str(workdir),
        "--configfile",
        str(config or ROOT / "config" / "demo.yaml"),
        *args,
    ]
    env = {
        **os.environ,
        "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions")),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    counts, in_table = {}, False
    for line in result.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(line.strip()) <= {"-", " "}:
                break
    return counts


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo config, run once end to end in a fresh directory."""
    workdir = tmp_path_factory.mktemp("demo")
    snakemake(workdir, "--cores", "2")
    return workdir


def test_demo_writes_report_and_complete_metrics(demo):
    assert (demo / "results" / "report" / "index.html").stat().st_size > 10_000
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    required = {
        "dataset",
        "model",
        "budget",
        "method",
        "selection",
        "k",
        "auroc",
        "auroc_lo",
        "auroc_hi",
        "tpr_at_1fpr",
        "tpr_at_5fpr",
        "n_members",
        "n_nonmembers",
        "n_failed",
    }
    assert required <= set(metrics.columns)
    ours = metrics[metrics.method == "param-delta"]
    for model in config["models"]:
        for budget in map(str, config["budgets"]):
            for selection in SELECTIONS + TRAJECTORY_SELECTIONS:
                rows = ours[(ours.model == model) & (ours.budget == budget) & (ours.selection == selection)]
                assert len(rows) >= 1, (model, budget, selection)
    assert (ours.n_members == 100).all() and (ours.n_nonmembers == 100).all()
    assert (ours.auroc_lo <= ours.auroc).all() and (ours.auroc <= ours.auroc_hi).all()


def test_demo_parameter_change_detects_members(demo):
    """The thesis's method beats chance on a target whose members are known, for both models."""
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    ours = metrics[metrics.method == "param-delta"]
    best = ours.loc[ours.groupby("model")["auroc"].idxmax()]
    assert set(best.model) == {"pythia-tiny", "llama-tiny"}
    assert (best.auroc_lo > 0.5).all(), best[["model", "budget", "selection", "k", "auroc", "auroc_lo"]]


def test_demo_compares_optimizers_and_supervised_classifiers(demo):
    """One snakemake call trained the texts under each optimizer setting of config/demo.yaml;
    metrics.csv holds each setting's param-delta rows, the supervised classifiers' and the
    combinations' rows, with intervals, and the report shows their sections."""
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for name, setting in config["optimizers"].items():
        for model in config["models"]:
            for budget in map(str, setting["budgets"]):
                here = metrics[(metrics.model == model) & (metrics.budget == budget)]
                ours = here[here.method == f"param-delta:{name}"]
                assert set(ours.selection) == set(SELECTIONS + TRAJECTORY_SELECTIONS)
                for learned in ("supervised-logistic", "supervised-forest", "combined-rank", "combined-logistic"):
                    assert len(here[here.method == f"{learned}:{name}"]) == 1, (name, model, learned)
    learned = metrics[metrics.method.str.startswith(("supervised-", "combined-"))]
    assert (learned.auroc_lo <= learned.auroc).all() and (learned.auroc <= learned.auroc_hi).all()
    # Higher = member: the classifiers find the members of the controlled target.
    assert (learned.groupby("model").auroc.max() > 0.8).all()
    page = (demo / "results" / "report" / "index.html").read_text()
    # The one-step loss change, read from the training records: higher = member.
    step = metrics[metrics.method.str.startswith("loss-change") & (metrics.budget == "10")]
    at_ten = [name for name, setting in config["optimizers"].items() if 10 in setting["budgets"]]
    assert set(step.method) == {"loss-change", *(f"loss-change:{name}" for name in at_ten)}
    assert (step.groupby("model").auroc.max() > 0.7).all(), step
    assert (step.auroc_lo <= step.auroc).all() and (step.auroc <= step.auroc_hi).all()
    combined = pd.read_parquet(demo / "results" / "scores" / "combined.parquet")
    assert set(combined.method) == set(learned.method[learned.method.str.startswith("combined-")])
    for section in ("what-works", "optimizer", "supervised"):
        start = page.index(f'<section id="{section}">')
        assert "<table>" in page[start : page.index("</section>", start)], section


def test_demo_runs_the_peers_attacks_with_intervals(demo):
    """Every attack of config/demo.yaml has its rows in metrics.csv with intervals; those that spend
    labelled non-members (ReCaLL's prefix, FSD's fine-tuning texts) score fewer non-members; and
    the report lists them in "what works"."""
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for attack in ("dcpdd", "pac", "recall", "fsd"):
        assert attack in config["attacks"]
        rows = metrics[metrics.method == attack]
        assert set(rows.model) == set(config["models"]), attack
        assert (rows.auroc_lo <= rows.auroc).all() and (rows.auroc <= rows.auroc_hi).all(), attack
        assert (rows.n_members == 100).all(), attack
    assert (metrics[metrics.method == "recall"].n_nonmembers == 100 - 5).all()
    assert (metrics[metrics.method == "fsd"].n_nonmembers == 100 - 20).all()
    assert (metrics[metrics.method.isin(["dcpdd", "pac"])].n_nonmembers == 100).all()
    page = (demo / "results" / "report" / "index.html").read_text()
    start = page.index('<section id="what-works">')
    table = page[start : page.index("</section>", start)]
    assert all(f">{attack}<" in table for attack in ("dcpdd", "pac", "recall", "fsd"))
    assert "labelled non-members (not scored)" in table


def test_demo_reads_a_constant_schedules_budgets_from_one_runs_trajectory(demo):
    """The `constant` setting trains 30 epochs only; its budgets 5, 10 and 20 come from that run's
    trajectory, beside the train: block's own runs of each budget, in metrics.csv and the report."""
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    constant = metrics[(metrics.method == "param-delta:constant") & (metrics.selection == "all")]
    for _, rows in constant.groupby("model"):
        assert sorted(rows.budget, key=int) == ["5", "10", "20", "30"]
    assert not (demo / "results" / "train" / "demo" / "llama-tiny" / "constant" / "5").exists()
    assert (constant.auroc_lo <= constant.auroc).all() and (constant.auroc <= constant.auroc_hi).all()
    trajectory = pd.read_parquet(
        demo / "results" / "deltas" / "demo" / "llama-tiny" / "constant" / "30.trajectory.parquet"
    )
    assert trajectory.epoch.max() == 30 and trajectory.text_id.nunique() == 200
    page = (demo / "results" / "report" / "index.html").read_text()
    start = page.index('<section id="trajectory">')
    section = page[start : page.index("</section>", start)]
    assert section.count("<table>") == 2 and "read from the trajectory" in section
    assert 'id="trajectory-d0-m0"' in section  # the curves' figure


def test_demo_stores_open_with_plain_zarr(demo):
    stores = sorted((demo / "results" / "train").rglob("*.zarr"))
    assert stores
    for path in stores[:4] + sorted((demo / "results" / "snapshots").glob("*/base.zarr")):
        group = zarr.open_group(path, mode="r")
        assert group.metadata.zarr_format == 3
        assert "provenance" in group.attrs
    assert not list((demo / "results").rglob("*.tmp-*")), "temporary outputs left behind"


def test_rerun_plans_nothing_and_new_model_plans_only_its_jobs(demo, tmp_path):
    assert "Nothing to be done" in snakemake(demo, "-n").stdout

    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["models"]["opt-tiny"] = {
        **config["models"]["pythia-tiny"],
        "build": {**config["models"]["pythia-tiny"]["build"], "arch": "opt"},
    }
    third = tmp_path / "three_models.yaml"
    third.write_text(yaml.safe_dump(config))
    result = snakemake(demo, "-n", config=third)
    jobs = planned_jobs(result)
    from paramdelta import data

    ids = pd.read_parquet(demo / "results" / "data" / "demo.parquet")["text_id"].tolist()
    # The train: block's budgets and those of each optimizers: entry (the demo's: budget 10).
    budgets = len(config["budgets"]) + sum(len(setting["budgets"]) for setting in config["optimizers"].values())
    shards = len(data.shards(ids, config["texts_per_job"]))
    samia_shards = len(data.shards(ids, config["baselines"]["samia"]["texts_per_job"]))
    assert jobs == {
        "base_model": 1,
        "target_model": 1,
        "base_snapshot": 1,
        "train": budgets * shards,
        "deltas": budgets,
        "scores": budgets,
        "logprob_scores": 1,
        "samia": samia_shards,
        "baseline_scores": 1,
        "metrics": 1,
        "report": 1,
        "all": 1,
    }, jobs
    planned_outputs = "\n".join(line for line in result.stdout.splitlines() if "output:" in line)
    assert "pythia-tiny" not in planned_outputs and "llama-tiny" not in planned_outputs


def small_config(tmp_path: Path, **overrides) -> Path:
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
                }
            }
        },
        "budgets": [40],
        "texts_per_job": 12,
        "features": {"k": [1, 5]},
        "metrics": {"bootstrap": 100},
        **overrides,
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_killed_training_job_is_redone_and_never_read(tmp_path, tiny_model_dir):
    # A saved model and a data set file (no model to build), and one cheap attack: the rerun must
    # still reach the metrics, but building models and SaMIA's sampling prove nothing more here.
    texts = tmp_path / "texts.jsonl"
    texts.write_text(
        "".join(
            json.dumps({"text": f"Text {i}: the mill of town {i} opened in {1850 + i}.", "label": i % 2}) + "\n"
            for i in range(12)
        )
    )
    config = small_config(
        tmp_path,
        datasets={"mini": {"path": str(texts)}},
        models={"tiny": {"path": str(tiny_model_dir)}},
        attacks=["loss"],
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    store = workdir / "results" / "train" / "mini" / "tiny" / "default" / "40"
    # To the metrics only (the report and the base snapshot add jobs and nothing to what is checked).
    metrics = "results/metrics.csv"
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config), "--cores", "1", metrics]
    runner = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(store.glob("*.zarr.tmp-*")):
            time.sleep(0.05)
        partial = list(store.glob("*.zarr.tmp-*"))
        assert partial, "the training job never started writing"
        jobs = [
            p for p in psutil.Process(runner.pid).children(recursive=True) if any(".train.py" in c for c in p.cmdline())
        ]
        assert jobs, "training job process not found"
        for job in jobs:
            job.send_signal(signal.SIGKILL)
        assert runner.wait(timeout=120) != 0
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not list(store.glob("*.zarr")), "a killed job left a store that looks complete"
    assert not (workdir / "results" / "metrics.csv").exists()

    snakemake(workdir, "--cores", "2", metrics, config=config)
    finals = sorted(store.glob("*.zarr"))
    assert sum(len(zarr.open_group(final, mode="r").attrs["records"]) for final in finals) == 12
    assert (workdir / "results" / "metrics.csv").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"train": {"lrr": 1.0}}, "lrr"),
        ({"budgets": [5, "ten"]}, "budgets[1]"),
        ({"snapshots": {"store": "everything"}}, "snapshots.store"),
        ({"texts_per_job": 0}, "texts_per_job"),
        ({"train": {"engine": "deepspeed", "deepspeed_config": "/no/such/zero2.json"}}, "train.deepspeed_config"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, change, field):
    config = small_config(tmp_path, **change)
    result = snakemake(tmp_path, "-n", config=config, check=False)
    assert result.returncode != 0
    assert field in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_bad_dataset_stops_before_any_job(tmp_path):
    data = tmp_path / "texts.jsonl"
    data.write_text('{"input": "a text", "label": 1}\n{"input": "", "label": 0}\n{"input": "another", "label": 0}\n')
    config = small_config(
        tmp_path, datasets={"bad": {"path": str(data), "text": "input"}}, models={"m": {"path": "unused/model"}}
    )
    result = snakemake(tmp_path, "-n", config=config, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "texts.jsonl" in output and "empty text in rows [1]" in output


def test_cluster_config_plans_with_slurm_profile(tmp_path):
    """The thesis's second experiment plans with the SLURM profile, no SLURM and no network."""
    workdir = tmp_path / "cluster"
    shutil.copytree(ROOT / "slurm", workdir / "slurm")
    command = [
        *SNAKEMAKE,
        "--directory",
        str(workdir),
        "--configfile",
        str(ROOT / "config" / "wikimia.yaml"),
        "--profile",
        "slurm",
        "-n",
    ]
    missing = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    assert missing.returncode != 0
    assert "python -m paramdelta.hub fetch --configfile" in missing.stdout + missing.stderr

    # What the fetch step leaves: the split in the project's cache, in WikiMIA's format.
    from paramdelta import data

    cache = workdir / data.hub_cache_path("swj0419/WikiMIA", "WikiMIA_length32")
    cache.parent.mkdir(parents=True)
    rows = [{"input": f"Candidate text number {i} about topic {i % 7}.", "label": i % 2} for i in range(60)]
    pd.DataFrame(rows).to_parquet(cache)
    planned = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    jobs = planned_jobs(planned)
    config = yaml.safe_load((ROOT / "config" / "wikimia.yaml").read_text())
    shards = len(data.shards([data.text_id(row["input"]) for row in rows], config["texts_per_job"]))
    models, budgets = len(config["models"]), len(config["budgets"])
    assert models == 4
    assert jobs == {
        "dataset": 1,
        "fetch_model": models,
        "base_snapshot": models,
        "train": models * budgets * shards,
        "deltas": models * budgets,
        "scores": models * budgets,
        "logprob_scores": models,
        "samia": models * len(data.shards([data.text_id(row["input"]) for row in rows], 50)),
        "blind": 1,
        "baseline_scores": models,
        "metrics": 1,
        "report": 1,
        "all": 1,
    }, jobs
    # The four 6-7B models and nothing of the demo, with the thesis's settings.
    outputs = "\n".join(line for line in planned.stdout.splitlines() if "output:" in line)
    planned_models = set(re.findall(r"results/train/wikimia32/([^/]+)/", outputs))
    assert planned_models == {"gpt-j-6b", "opt-6.7b", "pythia-6.9b", "llama-2-7b"}
    assert "demo" not in outputs and "tiny" not in outputs
    assert config["train"]["min_delta"] == 1.0e-4 and config["train"]["patience"] == 20


def test_demo_baselines_in_metrics_for_every_model(demo):
    """Issue checks of the baselines: every attack for every model; the blind classifier
    cannot tell the controlled members apart; the loss attack can."""
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    baselines = metrics[~metrics.method.str.startswith(("param-delta", "supervised-", "combined-", "loss-change"))]
    for model in config["models"]:
        methods = set(baselines[baselines.model == model].method)
        assert methods == set(config["attacks"]), (model, methods)
        mink = baselines[(baselines.model == model) & (baselines.method == "mink")]
        assert sorted(mink.k) == [5, 10, 20, 30, 40, 50, 60]
    blind = baselines[baselines.method == "blind"]
    assert ((blind.auroc_lo < 0.5) & (blind.auroc_hi > 0.5)).all(), blind
    loss = baselines[baselines.method == "loss"]
    assert (loss.auroc_lo > 0.5).all(), loss
    assert (baselines.budget == "-").all()


def test_blind_baseline_runs_on_wikimia_format_without_a_model(tmp_path):
    rows = [
        {"input": f"In {1990 + i % 30} the council of town {i} approved plan {i * 7}.", "label": i % 2}
        for i in range(40)
    ]
    data = tmp_path / "wikimia.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    # The model is never loaded by the blind rule: an empty directory, which no job could load, proves it.
    (tmp_path / "empty-model").mkdir()
    config = small_config(
        tmp_path,
        datasets={"wiki": {"path": str(data), "text": "input", "label": "label"}},
        models={"absent": {"path": str(tmp_path / "empty-model")}},
    )
    snakemake(tmp_path, "--cores", "1", "results/baselines/wiki/blind.parquet", config=config)
    scores = pd.read_parquet(tmp_path / "results" / "baselines" / "wiki" / "blind.parquet")
    assert len(scores) == 40 and scores.score.between(0, 1).all()


def test_mimir_style_member_and_nonmember_files_plan_and_run(tmp_path):
    """A benchmark shipped as a member file and a non-member file per domain (MIMIR's form):
    the workflow plans every job on it, and the blind baseline runs on its labels."""
    for name in ("member", "nonmember"):
        rows = [{"text": f"Paper {i} ({name}): we study graph {i * 3} in dimension {i % 5}."} for i in range(20)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "empty-model").mkdir()
    mimir = {
        "members": str(tmp_path / "member.jsonl"),
        "nonmembers": str(tmp_path / "nonmember.jsonl"),
        "domain": "arxiv",
        "overlap": "ngram_13_0.8",
    }
    config = small_config(
        tmp_path, datasets={"mimir-arxiv": mimir}, models={"absent": {"path": str(tmp_path / "empty-model")}}
    )
    jobs = planned_jobs(snakemake(tmp_path, "-n", config=config))
    assert jobs["train"] >= 1 and jobs["blind"] == 1 and jobs["metrics"] == 1, jobs
    snakemake(tmp_path, "--cores", "1", "results/baselines/mimir-arxiv/blind.parquet", config=config)
    table = pd.read_parquet(tmp_path / "results" / "data" / "mimir-arxiv.parquet")
    assert table.label.tolist() == [1] * 20 + [0] * 20
    # Every text names its file: the blind classifier sees that word, as it would see a shift
    # between a benchmark's member and non-member sources.
    blind = pd.read_parquet(tmp_path / "results" / "baselines" / "mimir-arxiv" / "blind.parquet")
    labelled = blind.merge(table[["text_id", "label"]], on="text_id")
    assert len(labelled) == 40 and labelled[labelled.label == 1].score.min() > labelled[labelled.label == 0].score.max()


CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_renders_in_chromium(demo, tmp_path):
    """The demo report in a real browser: no JavaScript errors, every plot drawn."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for this test (.ci/run installs it)"
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((demo / "results" / "report" / "index.html").as_uri(), wait_until="load")
        page.wait_for_timeout(500)
        plots = page.locator("div.plotly-graph-div")
        n_plots = plots.count()
        drawn = page.locator("div.plotly-graph-div.js-plotly-plot .main-svg").count()
        undrawn = page.evaluate(
            "() => [...document.querySelectorAll('div.plotly-graph-div')]"
            ".filter(d => !d.querySelector('.main-svg')).map(d => d.id)"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert n_plots >= 2 * 5 and drawn >= n_plots and not undrawn, (n_plots, drawn, undrawn)
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_report_numbers_are_the_metrics(demo):
    """Every AUROC of the table 5.1 form is the one in results/metrics.csv."""
    html = (demo / "results" / "report" / "index.html").read_text()
    section = html[html.index('id="table-5-1"') : html.index('id="table-5-2"')]
    metrics = pd.read_csv(demo / "results" / "metrics.csv", dtype={"budget": str})
    rows = metrics[(metrics.method == "param-delta") & (metrics.selection == "all")]
    assert len(rows) == 10
    for row in rows.itertuples():
        cell = f"{row.auroc:.2f} [{row.auroc_lo:.2f}, {row.auroc_hi:.2f}]"
        assert cell in section, (row.model, row.budget, cell)
    assert os.path.getsize(demo / "results" / "report" / "index.html") < 10 * 2**20


def test_snakemake_report_has_the_captions(demo):
    snakemake(demo, "--report", "report.zip")
    import zipfile

    with zipfile.ZipFile(demo / "report.zip") as bundle:
        names = bundle.namelist()
        page = bundle.read("report/report.html").decode("utf-8")
    items = {Path(name).name for name in names if name.startswith("report/data/raw/")}
    assert {"index.html", "metrics.csv", "ttest.csv", "correlation.csv", "topk_cv.csv"} <= items, items
    assert {"roc-d0-m0.html", "budget-d0-m1.html"} <= items, items
    page = " ".join(page.split())
    for caption in ("workflow.rst", "metrics.rst", "ttest.rst", "topk_cv.rst", "figure.rst"):
        # The caption's first sentence, whatever heading markup precedes it.
        words = [w for w in (ROOT / "report" / caption).read_text().split() if set(w) != {"="}]
        opening = " ".join(words[:12] if caption != "workflow.rst" else words[3:12])
        assert opening in page, (caption, opening)


def test_adding_texts_plans_only_the_jobs_that_hold_them(tmp_path, tiny_model_dir):
    """After a full run, ten more texts in the data set file plan only the training jobs whose
    texts changed (each holds a new text, or is what is left of a job a new text split), the
    per-data-set baselines, and the reductions."""
    from paramdelta import data

    texts = tmp_path / "texts.jsonl"
    rows = [{"text": f"Candidate {i}: the council of town {i} met in {1900 + i}.", "label": i % 2} for i in range(40)]
    # One text far longer than the tiny model's 64-token context: every attack must still score it.
    rows[0]["text"] = " ".join(f"Long candidate word{i % 23} in town {i}." for i in range(60))
    texts.write_text("".join(json.dumps(row) + "\n" for row in rows[:30]))
    config = small_config(
        tmp_path,
        datasets={"mine": {"path": str(texts)}},
        models={"tiny": {"path": str(tiny_model_dir)}},
        budgets=[1],
        texts_per_job=5,
        attacks=["loss", "mink", "samia", "blind"],
        baselines={"k": [20], "samia": {"n_samples": 2, "texts_per_job": 100}},
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    # To the metrics only: the report and the base snapshot add jobs and nothing to what is checked.
    target = "results/metrics.csv"
    snakemake(workdir, "--cores", "2", target, config=config)
    assert "Nothing to be done" in snakemake(workdir, "-n", target, config=config).stdout
    metrics = pd.read_csv(workdir / "results" / "metrics.csv")
    learned = {"supervised-logistic", "supervised-forest", "combined-rank", "combined-logistic"}
    # (No loss-change: at budget 1 a text runs one epoch, and its loss after a step is never measured.)
    assert set(metrics.method) == {"param-delta", "loss", "mink", "samia", "blind", *learned}
    assert ((metrics.n_members + metrics.n_nonmembers) == 30).all() and (metrics.n_failed == 0).all()
    trained = pd.read_parquet(workdir / "results" / "deltas" / "mine" / "tiny" / "default" / "1.texts.parquet")
    assert trained.set_index("text_id").at[data.text_id(rows[0]["text"]), "n_chunks"] > 1

    texts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    plan = snakemake(workdir, "-n", target, config=config)
    jobs = planned_jobs(plan)
    before = data.shards([data.text_id(row["text"]) for row in rows[:30]], 5)
    after = data.shards([data.text_id(row["text"]) for row in rows], 5)
    changed = {name for name, members in after.items() if before.get(name) != members}
    added = {data.text_id(row["text"]) for row in rows[30:]}
    outputs = "\n".join(line for line in plan.stdout.splitlines() if line.strip().startswith("output:"))
    planned = set(re.findall(r"results/train/mine/tiny/default/1/(s[0-9a-f]+)\.zarr", outputs))
    assert planned == changed, (planned, changed)
    assert len(planned) < len(after), "every training job was planned"
    for name in planned:
        holds_new = set(after[name]) & added
        remainder = any(set(after[name]) < set(old) for old in before.values())
        assert holds_new or remainder, name
    assert set(jobs) == {
        "dataset",
        "train",
        "deltas",
        "scores",
        "logprob_scores",
        "samia",
        "blind",
        "baseline_scores",
        "metrics",
    }, jobs
    assert jobs["train"] == len(changed)
