"""The page: each section's context rendered by its template, inside the page template.

The Jinja2 environment escapes every value it is given (autoescape); only plotly.js and
the figures' own HTML come in as markup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from paramdelta.atomic import atomic_file
from paramdelta.report.data import RunData
from paramdelta.report.plots import label, standalone
from paramdelta.report.sections import SECTIONS, blind

TITLE = "Parameter-change membership inference"

ENVIRONMENT = Environment(
    loader=PackageLoader("paramdelta.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Part:
    """A section's HTML for one data set (or for the whole run: ``dataset`` None)."""

    html: Markup
    dataset: str | None = None
    anchor: str = ""


@dataclass(frozen=True)
class RenderedSection:
    id: str
    heading: str
    caption: str
    parts: list[Part]


def template_name(section) -> str:
    return f"sections/{section.__name__.rsplit('.', 1)[-1]}.html.j2"


def render_section(section, data: RunData) -> RenderedSection:
    template = ENVIRONMENT.get_template(template_name(section))

    def html(subset: RunData) -> Markup:
        return Markup(template.render(section.context(subset)).strip())

    if section.PER_DATASET:
        parts = [Part(html(subset), subset.dataset, subset.anchor) for subset in data.per_dataset()]
    else:
        parts = [Part(html(data))]
    return RenderedSection(section.ID, section.HEADING, section.CAPTION, parts)


def render_page(data: RunData) -> str:
    """The whole report page as one HTML document."""
    return ENVIRONMENT.get_template("page.html.j2").render(
        title=data.meta.get("title", TITLE),
        generated=data.meta.get("generated", ""),
        plotly_js=Markup(get_plotlyjs()),
        warnings=blind.warnings(data),
        sections=[render_section(section, data) for section in SECTIONS],
        several=len(data.datasets) > 1,
        attribution=data.meta.get("attribution"),
    )


def render_figures(data: RunData, include_plotlyjs: bool | str = True) -> dict[str, str]:
    """Every figure of the page as a standalone HTML document, keyed by its div id."""
    data = replace(data, sink=[])
    for section in SECTIONS:
        render_section(section, data)
    several = len(data.datasets) > 1
    documents = {}
    for div_id, dataset, figure in data.sink:
        if several and dataset is not None:
            figure = go.Figure(figure).update_layout(title_text=f"{label(dataset)}: {figure.layout.title.text}")
        documents[div_id] = standalone(figure, div_id, include_plotlyjs)
    return documents


def write(path: str | os.PathLike, html: str) -> None:
    """Write the page so that it appears complete or not at all."""
    with atomic_file(path) as partial:
        partial.write_text(html, encoding="utf-8")
