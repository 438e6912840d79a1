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


def setup(snakemake, offline: bool = True) -> logging.Logger:
    """Send the job's logging, warnings and any uncaught exception to the rule's log file,
    and (unless `offline` is False: the fetch rule) forbid hub downloads.

    On a cluster the job's stderr goes to the scheduler's log; the rule's log file is where
    a user looks first, so a failing job's traceback is written there too (and still to
    stderr). Jobs load only what was fetched before them: a download from a compute node
    would be slow, unpinned and, on most clusters, impossible.
    """
    if offline:
        from paramdelta import hub

        hub.offline()
    logging.basicConfig(
        filename=snakemake.log[0] if snakemake.log else None,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    log = logging.getLogger(snakemake.rule)

    def log_uncaught(kind, error, trace):
        log.critical("job failed", exc_info=(kind, error, trace))
        sys.__excepthook__(kind, error, trace)

    sys.excepthook = log_uncaught
    return log
