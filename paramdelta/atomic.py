"""Outputs that appear complete or not at all.

Every output is written under a temporary sibling name and renamed into place
when complete, so an interrupted job leaves nothing a rerun would take as done.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def _partial_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path for a file; it is renamed to `path` if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary directory; it becomes `path` only if the block completes."""
    path = Path(path)
    partial = _partial_name(path)
    partial.mkdir(parents=True)
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
