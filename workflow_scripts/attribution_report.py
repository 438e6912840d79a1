"""The HTML page of the attribution-by-unlearning results (UnTrac), beside the main report."""

import json

from paramdelta.job import setup
from paramdelta.report import attribution

log = setup(snakemake)
inputs, params = snakemake.input, snakemake.params

# Snakemake hands config values over as its own mapping types; the page wants plain dicts.
experiments = json.loads(json.dumps(params.experiments))
attribution.write(
    inputs.influence, inputs.correlation, snakemake.output.html, title=params.title, experiments=experiments
)
log.info("attribution page written for %d experiments", len(experiments))
