"""Per-text membership scores of the parameter-change method for one (dataset, model, budget)."""

import pandas as pd
from _common import setup

from paramdelta import features
from paramdelta.atomic import write_parquet

log = setup(snakemake)
table = pd.read_parquet(snakemake.input.table)
if table.empty:
    raise ValueError(f"{snakemake.input.table}: no text trained successfully; see {snakemake.input.texts}")
scores = features.score_table(table, snakemake.params.selections, snakemake.params.ks, snakemake.params.aggregate)
w = snakemake.wildcards
scores.insert(0, "budget", w.budget)
scores.insert(0, "model", w.model)
scores.insert(0, "dataset", w.dataset)
write_parquet(scores, snakemake.output[0])
log.info("%d scores of %d texts", len(scores), scores.text_id.nunique())
