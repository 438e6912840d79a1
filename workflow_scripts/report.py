"""The HTML report of the run."""

import datetime

import pandas as pd
from _common import setup

from paramdelta import report, store

log = setup(snakemake)
inputs = snakemake.input
html = report.render(
    metrics=pd.read_csv(inputs.metrics, dtype={"budget": str}),
    scores=pd.concat([pd.read_parquet(p) for p in inputs.scores], ignore_index=True),
    ttest=pd.read_csv(inputs.ttest, dtype={"budget": str}),
    correlation=pd.read_csv(inputs.correlation),
    texts=pd.concat([pd.read_parquet(p) for p in inputs.texts], ignore_index=True),
    meta={
        "title": "Parameter-change membership inference",
        "config": snakemake.params.config,
        "versions": store.provenance()["versions"],
        "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    },
)
report.write(snakemake.output[0], html)
log.info("report written: %d bytes", len(html))
