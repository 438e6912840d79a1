"""Reduce one (dataset, model, training setting, budget)'s training stores to the per-layer
delta table, the per-text record (status, epochs, losses; `method` names the setting) and the
per-epoch trajectory (empty unless snapshots.trajectory)."""

import pandas as pd

from paramdelta import config, deltas, store
from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
labels = pd.read_parquet(snakemake.input.dataset).set_index("text_id")["label"].to_dict()
base = store.open_store(snakemake.input.base) if snakemake.input.get("base") else None
tables, records, trajectories = [], [], []
for path in snakemake.input.stores:
    table, texts = deltas.read_job_store(path, labels, snakemake.params.ks, base, threads=snakemake.threads)
    tables.append(table)
    records.append(texts)
    trajectories.append(deltas.read_trajectory(path, labels))
texts = pd.concat(records, ignore_index=True)
texts.insert(texts.columns.get_loc("budget") + 1, "method", config.method_name(snakemake.wildcards.optimizer))
table = pd.concat(tables, ignore_index=True)
write_parquet(table, snakemake.output.table)
write_parquet(texts, snakemake.output.texts)
recorded = [trajectory for trajectory in trajectories if not trajectory.empty]
write_parquet(pd.concat(recorded or trajectories[:1], ignore_index=True), snakemake.output.trajectory)
log.info("%d texts (%d failed), %d rows", len(texts), (texts.status != "ok").sum(), len(table))
