"""Outputs that appear complete or not at all.

Every output is written under a temporary sibling name and renamed into place
when complete, so an interrupted job leaves nothing a rerun would take as done.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def _partial_name(path: Path) -> Path:
    """A temporary sibling of `path`; stale ones, left by a writer killed outright (SIGKILL,
    scancel, a lost node), are removed first: only one job ever writes a given output."""
    for stale in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def disk_full(error: BaseException, path: Path) -> OSError | None:
    """An error that names the output and says the disk is full, for an ENOSPC/EDQUOT
    error raised while writing `path`; None for any other error."""
    if not isinstance(error, OSError) or error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    folder = path.parent if path.parent.exists() else Path(".")
    free = shutil.disk_usage(folder).free
    return OSError(
        error.errno,
        f"disk full while writing {path} ({free / 2**20:.1f} MiB left on its file system): nothing of it was "
        "kept; free some space, or point `results` at a larger disk, and rerun",
    )


@contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path for a file; it is renamed to `path` if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(path)
    try:
        yield partial
        os.replace(partial, path)
    except OSError as error:
        full = disk_full(error, path)
        if full is not None:
            raise full from error
        raise
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary directory; it becomes `path` only if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(path)
    partial.mkdir()
    try:
        yield partial
        if path.exists():
            shutil.rmtree(path)
        partial.rename(path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_parquet(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_file(path) as partial:
        table.to_parquet(partial, index=False)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_file(path) as partial:
        table.to_csv(partial, index=False)
