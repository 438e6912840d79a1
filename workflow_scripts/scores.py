"""Per-text membership scores of the parameter-change method for one (dataset, model, budget),
with each layer's AUROC alone and each text's total change (for the report)."""

import pandas as pd

from paramdelta import features
from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
table = pd.read_parquet(snakemake.input.table)
if table.empty:
    raise ValueError(f"{snakemake.input.table}: no text trained successfully; see {snakemake.input.texts}")
w = snakemake.wildcards
keys = {"dataset": w.dataset, "model": w.model, "budget": w.budget}
table = features.normalise(table)
outputs = {
    "scores": features.score_table(table, snakemake.params.selections, snakemake.params.ks, snakemake.params.aggregate),
    "layers": features.layer_aurocs(table),
    "change": features.text_change(table),
}
for name, frame in outputs.items():
    for column, value in reversed(keys.items()):
        frame.insert(0, column, value)
    write_parquet(frame, snakemake.output[name])
log.info("%d scores of %d texts", len(outputs["scores"]), outputs["change"].shape[0])
