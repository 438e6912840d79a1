"""Fetch one hub model at its configured revision (on the submitting node) and record the commit."""

import warnings

from paramdelta import hub
from paramdelta.job import setup

log = setup(snakemake, offline=False)
field = f"models.{snakemake.wildcards.model}"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", hub.UnpinnedRevision)
    manifest = hub.ensure_model(field, snakemake.params.repo, snakemake.params.revision)
for warning in caught:
    # Shown on the submitting node's terminal as well as in the log.
    print(f"warning: {warning.message}")
    log.warning("%s", warning.message)
hub.write_json(manifest, snakemake.output[0])
log.info("%s: %s at commit %s in %s", field, manifest["repo_id"], manifest["commit"], manifest["path"])
