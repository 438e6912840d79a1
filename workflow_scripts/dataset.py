"""Write one data set's candidate table (text_id, text, label)."""

from paramdelta import data
from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
table = data.load(snakemake.params.spec, snakemake.wildcards.dataset)
write_parquet(table, snakemake.output[0])
log.info("%d texts: %d members, %d non-members", len(table), (table.label == 1).sum(), (table.label == 0).sum())
