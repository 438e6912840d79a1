"""The report's sections, in page order.

A section is a module with its ``ID`` (the page anchor), ``HEADING``, ``CAPTION``,
``PER_DATASET`` (repeated once per data set, or once for the run) and ``context(data)``,
which returns what its template ``templates/sections/<module name>.html.j2`` lays out.
Adding a section: one module here, its template, and its line in ``SECTIONS``.
"""

from paramdelta.report.sections import (
    blind,
    budget,
    change,
    configuration,
    failed,
    layers,
    optimizer,
    roc,
    summary,
    supervised,
    table_5_1,
    table_5_2,
    thesis,
    topk,
    training,
    trajectory,
    what_works,
)

SECTIONS = (
    summary,
    blind,
    what_works,
    table_5_1,
    table_5_2,
    thesis,
    roc,
    budget,
    change,
    layers,
    training,
    topk,
    optimizer,
    trajectory,
    supervised,
    failed,
    configuration,
)
