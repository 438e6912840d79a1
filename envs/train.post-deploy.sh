#!/usr/bin/env bash
# Snakemake runs this once, in the environment it has just created from the YAML file of the
# same name (`--software-deployment-method conda`), to install the workflow's own package:
# the jobs import paramdelta like any library. Snakemake runs a copy of this script under
# .snakemake/conda, so the workflow's directory comes from rules/common.smk, which sets
# PARAMDELTA_SOURCE in the snakemake process that creates the environments.
#
# Editable: Snakemake rebuilds an environment only when its YAML file or this script
# changes, never when the package does, so an installed copy would run stale code after an
# edit; editable, every job runs the checkout's package as it is. envs/train.post-deploy.sh
# and envs/report.post-deploy.sh are the same script (tests/test_envs.py).
set -euo pipefail
: "${PARAMDELTA_SOURCE:?is not set: rules/common.smk sets it to the workflow directory when snakemake creates the environments}"
python -m pip install --no-deps --no-build-isolation --editable "$PARAMDELTA_SOURCE"
python -c "import paramdelta.job"
