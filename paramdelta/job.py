"""The start-up of every job a rule runs (the scripts in workflow_scripts/).

from paramdelta.job import setup
log = setup(snakemake)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


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
    warning = foreign_package(getattr(snakemake, "scriptdir", None))
    if warning:
        log.warning("%s", warning)
    return log


def foreign_package(scriptdir: str | None) -> str | None:
    """A warning when the job imports paramdelta from somewhere else than the checkout of the
    workflow that runs it (None when it is that checkout's, or the workflow has no package).

    The environments install the checkout editable (`make setup`, envs/*.post-deploy.sh), so
    an edit to the package reaches every job. A copy (`pip install .`), or an environment
    that another checkout created (a --conda-prefix shared by several checkouts), runs the
    code as it was then and there, which the job's outputs would not show.
    """
    if not scriptdir:
        return None
    checkout = Path(scriptdir).resolve().parent / "paramdelta"
    if not checkout.is_dir() or checkout == PACKAGE:
        return None
    return (
        f"this job imports paramdelta from {PACKAGE}, not from the workflow's checkout {checkout}: "
        f"its code may differ from the checkout's. Install the checkout in the job's environment: "
        f"pip install --no-deps -e {checkout.parent}"
    )
