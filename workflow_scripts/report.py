"""The HTML report of the run, and each of its figures as a standalone file."""

import datetime
import json

from paramdelta import report, store
from paramdelta.atomic import atomic_directory
from paramdelta.job import setup

log = setup(snakemake)
inputs, params = snakemake.input, snakemake.params

tables = report.load(
    metrics=inputs.metrics,
    ttest=inputs.ttest,
    correlation=inputs.correlation,
    topk_cv=inputs.topk_cv,
    scores=inputs.scores,
    texts=inputs.texts,
    layers=inputs.layers,
    change=inputs.change,
    curve=inputs.curve,
    benchmarks=params.benchmarks,
    gpus=params.gpus,
)
meta = {
    "config": json.loads(json.dumps(params.config)),
    "versions": store.provenance()["versions"],
    "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "jobs": {"n_jobs": len(tables["benchmarks"])},
}
if params.attribution:
    meta["attribution"] = params.attribution
report.write(snakemake.output.html, report.render(meta=meta, **tables))
# Standalone copies of the headline figures for Snakemake's report; each carries plotly.js
# (~5 MB), so not every figure of the page.
with atomic_directory(snakemake.output.figures) as folder:
    for name, html in report.figures(meta=meta, **tables).items():
        if name.startswith(("roc-", "budget-")):
            (folder / f"{name}.html").write_text(html)
log.info("report written with %d benchmark records", len(tables["benchmarks"]))
