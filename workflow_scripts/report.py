"""The HTML report of the run, and each of its figures as a standalone file."""

import datetime
import json
from pathlib import Path

import pandas as pd

from paramdelta import report, store
from paramdelta.atomic import atomic_directory
from paramdelta.job import setup

log = setup(snakemake)
inputs, params = snakemake.input, snakemake.params


def concat(paths):
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def benchmarks(root: Path, gpus: dict) -> pd.DataFrame:
    """Snakemake's per-job benchmark files: rule, job (its wildcards), seconds, memory, GPUs."""
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rule, *job = path.relative_to(root).with_suffix("").parts
        model = next((part for part in job if part in gpus), None)
        rows.append(
            {
                "rule": rule,
                "job": "/".join(job),
                "s": float(record["s"]),
                "max_rss": float(record["max_rss"]),
                "cpu_time": float(record.get("cpu_time", float("nan"))),
                "gpus": gpus.get(model, 0),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss", "cpu_time", "gpus"])


tables = dict(
    metrics=pd.read_csv(inputs.metrics, dtype={"budget": str}),
    scores=concat(inputs.scores),
    ttest=pd.read_csv(inputs.ttest, dtype={"budget": str}),
    correlation=pd.read_csv(inputs.correlation),
    texts=concat(inputs.texts),
)
extra = dict(
    layers=concat(inputs.layers),
    change=concat(inputs.change),
    topk_cv=pd.read_csv(inputs.topk_cv, dtype={"budget": str}),
    benchmarks=benchmarks(Path(params.benchmarks), params.gpus),
)
meta = {
    "title": "Parameter-change membership inference",
    "config": json.loads(json.dumps(params.config)),
    "versions": store.provenance()["versions"],
    "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "jobs": {"n_jobs": len(extra["benchmarks"])},
}
report.write(snakemake.output.html, report.render(**tables, meta=meta, **extra))
# Standalone copies of the headline figures for Snakemake's report; each carries plotly.js
# (~5 MB), so not every figure of the page.
with atomic_directory(snakemake.output.figures) as folder:
    for name, html in report.figures(**tables, meta=meta, **extra).items():
        if name.startswith(("roc-", "budget-")):
            (folder / f"{name}.html").write_text(html)
log.info("report written with %d benchmark records", len(extra["benchmarks"]))
