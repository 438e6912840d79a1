"""Self-contained HTML page of the attribution-by-unlearning results (UnTrac, METHOD.md section 4).

Which training set made the model do what it does on an evaluation set: the page sets this
run's numbers in the forms of the UnTrac paper's tables 2 to 4 and figures 2 and 3, with the
paper's published tables beside them for reference. It has the look of the main report: the
same page template, macros, style and plot helpers, plotly.js embedded once; the template
engine escapes every value and ``plots.label`` the text inside figures.

- ``data``: the influence and correlation tables, checked and normalised.
- ``sections``: what each section shows; ``paper``: the paper's numbers.
"""

from __future__ import annotations

import datetime
import os

import pandas as pd
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from paramdelta.report import page
from paramdelta.report.attribution.data import attribution_data, read
from paramdelta.report.attribution.sections import SECTIONS

__all__ = ["load", "render", "write"]


def load(influence_csv: str | os.PathLike, correlation_csv: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The two tables, keyed as ``render`` takes them."""
    influence, correlation = read(influence_csv, correlation_csv)
    return {"influence": influence, "correlation": correlation}


def render(
    influence: pd.DataFrame,
    correlation: pd.DataFrame,
    *,
    title: str,
    experiments: dict,
    generated: str | None = None,
) -> str:
    """The page as one HTML document.

    ``experiments`` maps an experiment to its ``title`` and its training sets' ``sizes`` (examples
    per set); ``generated`` defaults to now (UTC).
    """
    data = attribution_data(influence, correlation, experiments)
    sections = []
    for section in SECTIONS:
        context = section.context(data)
        if context is None:
            continue
        html = Markup(page.ENVIRONMENT.get_template(f"attribution/{section.ID}.html.j2").render(context).strip())
        sections.append(page.RenderedSection(section.ID, section.HEADING, section.CAPTION, [page.Part(html)]))
    if generated is None:
        generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return page.ENVIRONMENT.get_template("page.html.j2").render(
        title=title,
        generated=generated,
        plotly_js=Markup(get_plotlyjs()),
        warnings=[],
        sections=sections,
        several=False,
        attribution=None,
    )


def write(
    influence_csv: str | os.PathLike,
    correlation_csv: str | os.PathLike,
    out_html: str | os.PathLike,
    *,
    title: str,
    experiments: dict,
) -> None:
    """Read the workflow's two tables and write the page so that it appears complete or not at all."""
    page.write(out_html, render(**load(influence_csv, correlation_csv), title=title, experiments=experiments))
