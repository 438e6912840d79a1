"""Tables as data: rows of cells that the template macro ``table`` lays out.

A cell holds plain text and how to show it (header, bold, left-aligned label, a note
mark, spans); the template escapes the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    text: str
    header: bool = False
    bold: bool = False
    label: bool = False
    note: str = ""
    colspan: int = 1
    rowspan: int = 1


@dataclass(frozen=True)
class Table:
    head: list[list[Cell]]
    body: list[list[Cell]]


def header(columns: Iterable[str]) -> list[Cell]:
    return [Cell(str(column), header=True) for column in columns]


def plain_table(columns: Sequence[str], rows: Iterable[Sequence], label_columns: int | Iterable[int] = 1) -> Table:
    """A one-level table whose label columns (the first ``label_columns``, or those listed) are left-aligned."""
    labels = set(range(label_columns)) if isinstance(label_columns, int) else set(label_columns)
    body = [[Cell(str(value), label=index in labels) for index, value in enumerate(row)] for row in rows]
    return Table([header(columns)], body)
