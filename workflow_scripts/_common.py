"""Shared start-up of the thin scripts that the rules call.

Importing this module puts the repository root on sys.path, so that the
scripts import the paramdelta package from the checkout the workflow runs from
(on a cluster node too, whatever environment the job gets).
"""

import logging
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def setup(snakemake) -> logging.Logger:
    """Send the job's logging and warnings to the rule's log file."""
    logging.basicConfig(
        filename=snakemake.log[0] if snakemake.log else None,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    return logging.getLogger(snakemake.rule)
