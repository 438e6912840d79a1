"""Split a controlled data set's corpus: write the background documents (base pre-training)."""

import json

from paramdelta import data
from paramdelta.atomic import atomic_file
from paramdelta.job import setup

log = setup(snakemake)
spec = snakemake.params.spec["controlled"]
table, background = data.controlled_split(
    data.corpus_documents(spec["corpus"]), spec["candidates"], spec["members"], spec["seed"]
)
with atomic_file(snakemake.output.background) as partial, open(partial, "w") as handle:
    for document in background:
        handle.write(json.dumps({"text": document}) + "\n")
log.info("%d background documents, %d candidates", len(background), len(table))
