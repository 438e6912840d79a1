import base64
import json
import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from paramdelta import report
from paramdelta.features import K_SELECTIONS, METHOD, SELECTIONS
from paramdelta.metrics import budget_correlation, member_ttest, summarise

ODD_MODEL = "a<b>&c"
MODELS = ("tiny", ODD_MODEL)
BUDGETS = ("5", "10", "es")
KS = (1.0, 5.0)
N_TEXTS = 40
FAILED = {"model": "tiny", "budget": "10", "text_id": "t007", "failure": "loss is NaN", "failed_epoch": 3}
SECTION_IDS = ("summary", "table-5-1", "table-5-2", "member-tests", "roc", "failed", "config")
AUROC_CELL = re.compile(r"^(\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\]$")


def synthetic_run(datasets=("wiki",), seed=0):
    """Random scores for every selection (and one baseline), with one failed training run."""
    rng = np.random.default_rng(seed)
    text_ids = [f"t{index:03d}" for index in range(N_TEXTS)]
    labels = np.r_[np.ones(N_TEXTS // 2, dtype=int), np.zeros(N_TEXTS - N_TEXTS // 2, dtype=int)]
    score_blocks, text_blocks = [], []
    for dataset in datasets:
        for model in MODELS:
            for budget in BUDGETS:
                failed = dataset == datasets[0] and model == FAILED["model"] and budget == FAILED["budget"]
                ok = [text_id != FAILED["text_id"] or not failed for text_id in text_ids]
                text_blocks.append(
                    pd.DataFrame(
                        {
                            "dataset": dataset,
                            "model": model,
                            "budget": budget,
                            "text_id": text_ids,
                            "label": labels,
                            "status": ["ok" if keep else "failed" for keep in ok],
                            "failure": [None if keep else FAILED["failure"] for keep in ok],
                            "failed_epoch": [np.nan if keep else FAILED["failed_epoch"] for keep in ok],
                            "epochs_run": 5,
                        }
                    )
                )
                variants = [(METHOD, selection, np.nan) for selection in SELECTIONS if selection not in K_SELECTIONS]
                variants += [(METHOD, selection, k) for selection in K_SELECTIONS for k in KS]
                variants.append(("loss", np.nan, np.nan))
                for method, selection, k in variants:
                    score_blocks.append(
                        pd.DataFrame(
                            {
                                "dataset": dataset,
                                "model": model,
                                "budget": budget,
                                "text_id": text_ids,
                                "label": labels,
                                "method": method,
                                "selection": selection,
                                "k": k,
                                "score": rng.normal(size=N_TEXTS) + 0.5 * labels,
                            }
                        )[ok]
                    )
    scores = pd.concat(score_blocks, ignore_index=True)
    texts = pd.concat(text_blocks, ignore_index=True)
    metrics = summarise(scores, ["dataset", "model", "budget", "method", "selection", "k"], n_boot=50)
    metrics["n_failed"] = 0
    ttest = pd.DataFrame(
        [
            {"dataset": dataset, "model": model, "budget": budget, **member_ttest(-group["score"], group["label"])}
            for (dataset, model, budget), group in scores[scores["selection"] == "all"].groupby(
                ["dataset", "model", "budget"]
            )
        ]
    )
    correlation = pd.DataFrame(
        [
            {
                "dataset": dataset,
                "model": model,
                "method": METHOD,
                "selection": "all",
                "k": np.nan,
                **budget_correlation(group),
            }
            for (dataset, model), group in metrics[metrics["selection"] == "all"].groupby(["dataset", "model"])
        ]
    )
    meta = {
        "title": "Test run",
        "config": {"datasets": list(datasets), "models": list(MODELS), "budgets": list(BUDGETS)},
        "versions": {"python": "3.12", "torch": "2.5"},
        "generated": "2025-01-01 12:00",
    }
    return metrics, scores, ttest, correlation, texts, meta


class PageParser(HTMLParser):
    """Start tags with their attributes, and the tables as rows of (text, bold) cells."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.tables = []
        self._cell = None
        self._bold = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
            self._bold = False
        elif tag == "strong" and self._cell is not None:
            self._bold = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((self._cell.strip(), self._bold))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(fragment):
    parser = PageParser()
    parser.feed(fragment)
    return parser


def section(page, section_id):
    start = page.index(f'<section id="{section_id}">')
    return page[start : page.index("</section>", start)]


@pytest.fixture(scope="module")
def run():
    return synthetic_run()


@pytest.fixture(scope="module")
def page(run):
    return report.render(*run)


def test_page_needs_no_network(page):
    for tag, attributes in parse(page).tags:
        for name in ("src", "href"):
            value = attributes.get(name) or ""
            assert not re.match(r"^(https?:)?//", value), f"<{tag} {name}={value!r}>"
    assert "<link" not in page.split("<body>")[0]


def test_plotly_js_is_embedded_once(page):
    assert page.count(get_plotlyjs()) == 1
    assert page.count("Plotly.newPlot(") == len(MODELS)


def test_all_sections_are_present(page):
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}"><h2>' in page
        assert f'href="#{section_id}"' in page
    assert page.count('class="caption"') == len(SECTION_IDS)


def test_table_5_1_shows_the_metrics(run, page):
    metrics = run[0]
    (table,) = parse(section(page, "table-5-1")).tables
    header, *rows = table
    assert [text for text, _ in header] == ["budget", *MODELS, "mean"]
    assert [row[0][0] for row in rows] == ["5 epochs", "10 epochs", "early stopping"]
    main = metrics[(metrics["method"] == METHOD) & (metrics["selection"] == "all")].set_index(["budget", "model"])
    for budget, row in zip(BUDGETS, rows):
        for model, (text, _) in zip(MODELS, row[1:]):
            expected = main.loc[(budget, model)]
            assert AUROC_CELL.match(text).groups() == tuple(
                f"{expected[column]:.2f}" for column in ("auroc", "auroc_lo", "auroc_hi")
            )
        assert float(row[-1][0]) == pytest.approx(main.loc[budget, "auroc"].mean(), abs=0.005)


def test_table_5_1_marks_the_best_of_each_column(page):
    (table,) = parse(section(page, "table-5-1")).tables
    _, *rows = table
    for column in range(1, len(MODELS) + 2):
        values = [float(row[column][0].split()[0]) for row in rows]
        bold = [row[column][1] for row in rows]
        assert bold == [value == max(values) for value in values]


def test_table_5_2_has_budget_then_model_header_and_best_k(run, page):
    metrics = run[0]
    fragment = section(page, "table-5-2")
    (table,) = parse(fragment).tables
    budgets, models, *rows = table
    assert [text for text, _ in budgets] == ["selection / method", "5 epochs", "10 epochs", "early stopping"]
    assert [text for text, _ in models] == [*MODELS, "mean"] * len(BUDGETS)
    assert [row[0][0] for row in rows] == [*SELECTIONS, "loss"]
    assert "optimistic" in fragment

    topk = metrics[(metrics["selection"] == "topk-layers") & (metrics["model"] == "tiny") & (metrics["budget"] == "5")]
    best = topk.sort_values(["auroc", "k"], ascending=[False, True]).iloc[0]
    cell_text = rows[SELECTIONS.index("topk-layers")][1][0]
    assert cell_text == f"{best['auroc']:.2f} (K={int(best['k'])})*"
    for column in range(1, len(models) + 1):
        values = [float(row[column][0].split()[0]) for row in rows]
        assert [row[column][1] for row in rows] == [value == max(values) for value in values]


def test_member_tests_list_every_model_and_budget(page):
    ttest_table, correlation_table = parse(section(page, "member-tests")).tables
    assert len(ttest_table) == 1 + len(MODELS) * len(BUDGETS)
    assert [row[0][0] for row in correlation_table[1:]] == list(MODELS)


def figure_traces(page, div_id):
    call = f'Plotly.newPlot(                        "{div_id}",'
    start = page.index(call) + len(call)
    traces, _ = json.JSONDecoder().raw_decode(page[start:].lstrip())
    return traces


def array(values):
    """A figure array, which plotly may write as base64-encoded typed data."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def test_roc_plot_per_model_has_each_budget_and_the_best_other_selection(run, page):
    metrics = run[0]
    for index, model in enumerate(MODELS):
        traces = figure_traces(page, f"roc-d0-m{index}")
        ours = metrics[(metrics["model"] == model) & (metrics["method"] == METHOD)]
        main = ours[ours["selection"] == "all"].set_index("budget")["auroc"]
        best_budget = main.idxmax()
        other = ours[(ours["budget"] == best_budget) & (ours["selection"] != "all")]
        other = other.sort_values(["auroc", "k"], ascending=[False, True]).iloc[0]

        assert traces[0]["name"] == "chance"
        names = [trace["name"] for trace in traces[1:]]
        budget_names = {"5": "5 epochs", "10": "10 epochs", "es": "early stopping"}
        assert names[:-1] == [f"all layers, {budget_names[budget]} (AUROC {main[budget]:.2f})" for budget in BUDGETS]
        assert names[-1].startswith(f"{other['selection']}")
        assert names[-1].endswith(f"{budget_names[best_budget]} (AUROC {other['auroc']:.2f})")
        assert traces[-1]["line"]["dash"] == "dash"
        for trace in traces[1:]:
            fpr, tpr = array(trace["x"]), array(trace["y"])
            assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
            assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()


def test_failed_text_is_listed(page):
    (table,) = parse(section(page, "failed")).tables
    assert [text for text, _ in table[1]] == ["tiny", "10 epochs", FAILED["text_id"], FAILED["failure"], "3"]
    assert len(table) == 2


def test_no_failures_say_none():
    metrics, scores, ttest, correlation, texts, meta = synthetic_run()
    texts = texts.assign(status="ok")
    assert "<p>none</p>" in section(report.render(metrics, scores, ttest, correlation, texts, meta), "failed")


def test_names_are_escaped(page):
    assert ODD_MODEL not in page
    assert "a&lt;b&gt;&amp;c" in page


def test_several_datasets_get_one_block_each():
    page = report.render(*synthetic_run(datasets=("wiki", "news")))
    for section_id in ("table-5-1", "roc", "failed"):
        fragment = section(page, section_id)
        assert f'id="{section_id}-d0"' in fragment and f'id="{section_id}-d1"' in fragment
        assert "<h3>Data set wiki</h3>" in fragment and "<h3>Data set news</h3>" in fragment
    assert page.count("Plotly.newPlot(") == 2 * len(MODELS)
    summary = parse(section(page, "summary")).tables[0]
    assert [row[:3] for row in summary[1:]] == [
        [("wiki", False), ("20", False), ("20", False)],
        [("news", False), ("20", False), ("20", False)],
    ]


def test_duplicate_metrics_are_refused(run):
    metrics, *rest = run
    with pytest.raises(ValueError, match="more than one row"):
        report.render(pd.concat([metrics, metrics.iloc[:1]]), *rest)


def test_budgets_are_ordered_numerically_with_early_stopping_last():
    assert report.ordered_budgets(["es", "30", "5", "10", 20]) == ["5", "10", "20", "30", "es"]


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "report" / "index.html"
    report.write(path, "<p>first</p>")
    assert path.read_text(encoding="utf-8") == "<p>first</p>"

    def interrupted(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="disk full"):
        report.write(path, "<p>second</p>")
    assert path.read_text(encoding="utf-8") == "<p>first</p>"
    assert os.listdir(path.parent) == ["index.html"]
