"""Self-contained HTML report of one run: the thesis's tables 5.1 and 5.2, the baselines, plots.

The page opens from disk without network: plotly.js is embedded once in the page and
every figure only refers to it. Each section (``sections``) computes what it shows from
the run's tables (``data``) as plain values, and its Jinja2 template lays them out; the
template engine escapes every value, and ``plots.label`` escapes the text inside figures,
whose labels plotly reads as HTML. The sections about results repeat once per data set.

The page stays small whatever the number of texts: ROC curves are thinned to at most
``roc.ROC_POINTS`` points, distributions are drawn from summary statistics (box plots,
per-epoch quantiles, histograms) instead of one point per text, and long lists are capped.
``figures`` returns the same figures one standalone HTML document each, for export.
"""

from __future__ import annotations

import pandas as pd

from paramdelta.report.data import load, run_data
from paramdelta.report.page import render_figures, render_page, write

__all__ = ["figures", "load", "render", "write"]


def render(
    metrics: pd.DataFrame,
    scores: pd.DataFrame,
    ttest: pd.DataFrame,
    correlation: pd.DataFrame,
    texts: pd.DataFrame,
    meta: dict,
    *,
    layers: pd.DataFrame | None = None,
    change: pd.DataFrame | None = None,
    topk_cv: pd.DataFrame | None = None,
    benchmarks: pd.DataFrame | None = None,
    curve: pd.DataFrame | None = None,
) -> str:
    """The whole report page as one HTML document.

    The keyword tables are optional: a section whose table is missing says so.
    """
    tables = dict(metrics=metrics, scores=scores, ttest=ttest, correlation=correlation, texts=texts)
    optional = dict(layers=layers, change=change, topk_cv=topk_cv, benchmarks=benchmarks, curve=curve)
    return render_page(run_data(meta, **tables, **optional))


def figures(
    metrics: pd.DataFrame,
    scores: pd.DataFrame,
    ttest: pd.DataFrame,
    correlation: pd.DataFrame,
    texts: pd.DataFrame,
    meta: dict,
    *,
    layers: pd.DataFrame | None = None,
    change: pd.DataFrame | None = None,
    topk_cv: pd.DataFrame | None = None,
    benchmarks: pd.DataFrame | None = None,
    curve: pd.DataFrame | None = None,
    include_plotlyjs: bool | str = True,
) -> dict[str, str]:
    """Every figure of the page as a standalone HTML document, keyed by its div id (file-name safe).

    ``include_plotlyjs`` is passed to plotly: True embeds plotly.js (about 4.8 MB) in every
    document, so that each opens alone without network; "directory" refers to a
    plotly.min.js beside the files instead, which the caller then writes once.
    """
    tables = dict(metrics=metrics, scores=scores, ttest=ttest, correlation=correlation, texts=texts)
    optional = dict(layers=layers, change=change, topk_cv=topk_cv, benchmarks=benchmarks, curve=curve)
    return render_figures(run_data(meta, **tables, **optional), include_plotlyjs)
