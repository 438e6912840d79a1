"""Every baseline of one (dataset, model) in the per-text score format of the parameter-change
method (budget "-": baselines have no epoch budget; the blind rows repeat for every model)."""

import pandas as pd

from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
inputs = snakemake.input
parts = []
if "logprob" in inputs.keys():
    parts.append(pd.read_parquet(inputs.logprob))
if "samia" in inputs.keys():
    parts += [pd.read_parquet(path) for path in inputs.samia]
if "blind" in inputs.keys():
    parts.append(pd.read_parquet(inputs.blind))
scores = pd.concat(parts, ignore_index=True)
scores = scores[scores["method"].isin(snakemake.params.attacks)]
labels = pd.read_parquet(inputs.dataset).set_index("text_id")["label"]
w = snakemake.wildcards
# Only gradnorm has a selection (a layer group); the others score the whole model.
selection = scores["selection"].fillna("") if "selection" in scores.columns else ""
scores = scores.assign(
    dataset=w.dataset,
    model=w.model,
    budget="-",
    label=labels.reindex(scores["text_id"]).to_numpy(),
    selection=selection,
)[["dataset", "model", "budget", "text_id", "label", "method", "selection", "k", "score"]]
write_parquet(scores, snakemake.output[0])
log.info("%d baseline scores: %s", len(scores), ", ".join(sorted(scores["method"].unique())))
