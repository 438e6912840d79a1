"""The report's figures: one look for all of them, and their HTML.

Plotly reads titles, legend entries and hover texts as HTML, and the template engine
does not see inside a figure's JSON, so every piece of text that goes into a figure
passes through ``label`` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import plotly.graph_objects as go
from markupsafe import Markup

MEMBER_COLOURS = {1: "#1f77b4", 0: "#ff7f0e"}
BUDGET_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
BASELINE_COLOURS = {
    "loss": "#444444", "mink": "#8c564b", "minkpp": "#bcbd22", "samia-zlib": "#17becf", "blind": "#999999",
}  # fmt: skip
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
# A few lines of plotly_white: the full template is ~7 kB a figure and slow to validate.
_AXIS = {"gridcolor": "#ebf0f8", "zerolinecolor": "#ebf0f8", "linecolor": "#ebf0f8", "automargin": True}
TEMPLATE = {
    "layout": {
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "hovermode": "closest",
        "xaxis": _AXIS,
        "yaxis": _AXIS,
    }
}


def label(text) -> str:
    """Text for a figure's title, legend, axis tick or hover: escaped, as plotly renders it as HTML."""
    return escape(str(text), quote=True)


def plot(data, figure: go.Figure, div_id: str) -> Markup:
    """A figure as a div that uses the page's plotly.js; recorded in ``data.sink`` for export too."""
    if data.sink is not None:
        data.sink.append((div_id, data.dataset, figure))
    return Markup(figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG))


def standalone(figure: go.Figure, div_id: str, include_plotlyjs: bool | str) -> str:
    """A figure as a whole HTML document."""
    return figure.to_html(full_html=True, include_plotlyjs=include_plotlyjs, div_id=div_id, config=PLOT_CONFIG)


def layout(traces: Sequence | go.Figure, heading: str, height: int, **settings) -> go.Figure:
    """A figure of ``traces`` with the page's look; ``heading`` is escaped here."""
    title = {"text": label(heading), **settings.pop("title", {})}
    # Built in one go: update_layout and make_subplots cost ten times as much, per figure.
    data = traces.data if isinstance(traces, go.Figure) else traces
    return go.Figure(
        data,
        layout={"title": title, "template": TEMPLATE, "height": height, "margin": {"t": 60, "b": 50}, **settings},
    )


def panels(titles: Sequence[str], gap: float, x: Sequence[dict], y: Sequence[dict]) -> dict:
    """Layout of side-by-side panels (axes x, x2, ... and y, y2, ...) titled ``titles`` (escaped here)."""
    width = (1 - gap * (len(titles) - 1)) / len(titles)
    axes, annotations = {}, []
    for index, (title, x_axis, y_axis) in enumerate(zip(titles, x, y)):
        suffix = "" if index == 0 else str(index + 1)
        left = index * (width + gap)
        axes[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}", **x_axis}
        axes[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", **y_axis}
        annotations.append(
            {"text": label(title), "x": left + width / 2, "y": 1, "xref": "paper", "yref": "paper",
             "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}
        )  # fmt: skip
    return {**axes, "annotations": annotations}
