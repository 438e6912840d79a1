import base64
import copy
import json
import os
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from paramdelta import report
from paramdelta.features import K_SELECTIONS, METHOD, SELECTIONS
from paramdelta.metrics import (
    MEAN_OVER_MODELS,
    correlation_table,
    member_ttest,
    roc_points,
    summarise,
    topk_cv_table,
)
from paramdelta.report import page as page_module
from paramdelta.report import plots
from paramdelta.report.format import budget_heading, ordered_budgets
from paramdelta.report.sections import SECTIONS, roc, thesis
from paramdelta.report.sections.change import box_stats
from paramdelta.report.sections.failed import FAILED_ROWS
from paramdelta.report.sections.layers import NO_BLOCK
from paramdelta.report.tables import Cell, Table

ODD_MODEL = "a<b>&c"
MODELS = ("tiny", ODD_MODEL)
BUDGETS = ("5", "20", "30", "es")
KS = (1.0, 5.0)
N_TEXTS = 40
N_BLOCKS = 2
FAILED = {"model": "tiny", "budget": "20", "text_id": "t007", "failure": "loss is NaN", "failed_epoch": 3}
SECTION_IDS = (
    "summary", "blind", "table-5-1", "table-5-2", "thesis", "roc", "budget", "change", "layers", "training",
    "topk", "optimizer", "trajectory", "supervised", "failed", "config",
)  # fmt: skip
SECTION_IDS = (*SECTION_IDS[:2], "what-works", *SECTION_IDS[2:])
PLOTLY_JS = get_plotlyjs()
AUROC_CELL = re.compile(r"^(\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\]$")
BUDGET_NAMES = {"5": "5 epochs", "10": "10 epochs", "20": "20 epochs", "30": "30 epochs", "es": "early stopping"}
# Baselines with the K they are run at (NaN: no K).
BASELINE_VARIANTS = (
    ("loss", np.nan), ("zlib", np.nan), ("mink", 5.0), ("mink", 20.0), ("minkpp", 5.0), ("minkpp", 20.0),
    ("samia-zlib", np.nan), ("blind", np.nan),
)  # fmt: skip
BENCHMARKS = pd.DataFrame(
    {
        "rule": ["train", "train", "train", "deltas", "report"],
        "job": ["dataset=wiki, model=tiny, budget=5", "b", "c", "d", "e"],
        "s": [3600.0, 1800.0, 1800.0, 60.0, 5.0],
        "max_rss": [20000.0, 21000.0, 19000.0, 800.0, 300.0],
        "cpu_time": [3000.0, 1700.0, np.nan, 55.0, 4.0],
        "gpus": [2, 1, 1, 0, 0],
    }
)


def layer_names(n_blocks):
    """(name, group, block) of a GPT-NeoX-like model in module order."""
    names = [("gpt_neox.embed_in", "embedding", -1)]
    for block in range(n_blocks):
        prefix = f"gpt_neox.layers.{block}"
        names += [
            (f"{prefix}.input_layernorm", "norm", block),
            (f"{prefix}.post_attention_layernorm", "norm", block),
            (f"{prefix}.attention.query_key_value", "attention", block),
            (f"{prefix}.attention.dense", "attention", block),
            (f"{prefix}.mlp.dense_h_to_4h", "mlp", block),
            (f"{prefix}.mlp.dense_4h_to_h", "mlp", block),
        ]
    return names + [("gpt_neox.final_layer_norm", "norm", -1), ("embed_out", "embedding", -1)]


def synthetic_run(
    datasets=("wiki",),
    models=MODELS,
    budgets=BUDGETS,
    n_texts=N_TEXTS,
    ks=KS,
    n_blocks=N_BLOCKS,
    blind_separates=False,
    n_boot=50,
    seed=0,
):
    """Random inputs of every table: scores with a weak member signal, one failed training run.

    The blind baseline scores the same for every model; with ``blind_separates`` it scores
    each text by its label, so that it beats every attack.
    """
    rng = np.random.default_rng(seed)
    text_ids = [f"t{index:03d}" for index in range(n_texts)]
    labels = np.r_[np.ones(n_texts // 2, dtype=int), np.zeros(n_texts - n_texts // 2, dtype=int)]
    blind_score = labels.astype(float) if blind_separates else rng.normal(size=n_texts)
    score_blocks, text_blocks, layer_rows, change_blocks, topk_rows = [], [], [], [], []

    def scores_block(dataset, model, budget, method, selection, k, score, keep):
        return pd.DataFrame(
            {
                "dataset": dataset,
                "model": model,
                "budget": budget,
                "text_id": text_ids,
                "label": labels,
                "method": method,
                "selection": selection,
                "k": k,
                "score": score,
            }
        )[keep]

    for dataset in datasets:
        for model in models:
            everyone = np.ones(n_texts, dtype=bool)
            for method, k in BASELINE_VARIANTS:
                score = blind_score if method == "blind" else rng.normal(size=n_texts) + 0.3 * labels
                score_blocks.append(scores_block(dataset, model, "-", method, np.nan, k, score, everyone))
            for budget in budgets:
                failed = dataset == datasets[0] and model == FAILED["model"] and budget == FAILED["budget"]
                ok = np.array([text_id != FAILED["text_id"] or not failed for text_id in text_ids])
                epochs = rng.integers(5, 30, size=n_texts) if budget == "es" else np.full(n_texts, int(budget))
                losses = [
                    list(3.0 - 0.3 * label - 0.02 * np.arange(epoch) + 0.1 * rng.normal(size=epoch))
                    for label, epoch in zip(labels, epochs)
                ]
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
                            "epochs_run": epochs,
                            "best_epoch": epochs,
                            "seconds": 0.1,
                            "losses": losses,
                        }
                    )
                )
                variants = [(selection, np.nan) for selection in SELECTIONS if selection not in K_SELECTIONS]
                variants += [(selection, k) for selection in K_SELECTIONS for k in ks]
                for selection, k in variants:
                    score = rng.normal(size=n_texts) + 0.5 * labels
                    score_blocks.append(scores_block(dataset, model, budget, METHOD, selection, k, score, ok))
                for index, (name, group, block) in enumerate(layer_names(n_blocks)):
                    layer_rows.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "budget": budget,
                            "layer": name,
                            "layer_index": index,
                            "group": group,
                            "block": block,
                            "auroc": rng.uniform(0.3, 0.8),
                        }
                    )
                scale = 1 + np.arange(n_texts) % 3
                change_blocks.append(
                    pd.DataFrame(
                        {
                            "dataset": dataset,
                            "model": model,
                            "budget": budget,
                            "text_id": text_ids,
                            "label": labels,
                            "l2_total": rng.gamma(4, scale=scale) - labels,
                            "mean_l2": rng.gamma(2, size=n_texts),
                            "mean_norm": rng.uniform(size=n_texts),
                        }
                    )[ok]
                )
                for selection in K_SELECTIONS:
                    topk_rows.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "budget": budget,
                            "selection": selection,
                            "k_eval": float(rng.choice(ks)),
                            "auroc_eval": rng.uniform(0.6, 0.8),
                            "auroc_cv": 0.61 + 0.01 * len(topk_rows),
                            "auroc_cv_lo": 0.5,
                            "auroc_cv_hi": 0.72,
                            "k_folds": "1,5,5,1,5",
                        }
                    )
    scores = pd.concat(score_blocks, ignore_index=True)
    texts = pd.concat(text_blocks, ignore_index=True)
    metrics = summarise(scores, ["dataset", "model", "budget", "method", "selection", "k"], n_boot=n_boot)
    metrics["n_failed"] = 0
    ours = scores[scores["method"] == METHOD]
    ttest = pd.DataFrame(
        [
            {"dataset": dataset, "model": model, "budget": budget, **member_ttest(-group["score"], group["label"])}
            for (dataset, model, budget), group in ours[ours["selection"] == "all"].groupby(
                ["dataset", "model", "budget"]
            )
        ]
    )
    correlation = correlation_table(metrics)  # per model, and the mean over models (thesis 5.2.4)
    meta = {
        "title": "Test run",
        "config": {
            "datasets": {dataset: {"path": f"data/{dataset}.jsonl"} for dataset in datasets},
            "models": {model: {"path": f"local/{model}"} for model in models},
            "budgets": list(budgets),
        },
        "versions": {"python": "3.12", "torch": "2.5"},
        "generated": "2025-01-01 12:00",
        "jobs": {"n_jobs": 57, "n_failed": 2},
    }
    extra = {
        "layers": pd.DataFrame(layer_rows),
        "change": pd.concat(change_blocks, ignore_index=True),
        "topk_cv": pd.DataFrame(topk_rows),
        "benchmarks": BENCHMARKS,
    }
    return (metrics, scores, ttest, correlation, texts, meta), extra


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


def texts_of(table):
    return [[text for text, _ in row] for row in table]


def figure_ids(page):
    return re.findall(r'Plotly\.newPlot\(\s*"([^"]+)"', page)


def figure_json(page, div_id):
    """The traces and the layout that the page passes to Plotly.newPlot for ``div_id``."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    decoder = json.JSONDecoder()
    traces, end = decoder.raw_decode(page, match.end())
    layout, _ = decoder.raw_decode(page[end:].lstrip(", \n"))
    return traces, layout


def array(values):
    """A figure array, which plotly may write as base64-encoded typed data."""
    if isinstance(values, dict):
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return flat.reshape([int(size) for size in values["shape"].split(",")]) if "shape" in values else flat
    return np.asarray(values)


def expected_interval(row):
    return f"{row['auroc']:.2f} [{row['auroc_lo']:.2f}, {row['auroc_hi']:.2f}]"


def best_over_k(metrics, **where):
    rows = metrics
    for column, value in where.items():
        rows = rows[rows[column].isna()] if value is None else rows[rows[column] == value]
    return rows.sort_values(["auroc", "k"], ascending=[False, True]).iloc[0]


@pytest.fixture(scope="module")
def run():
    return synthetic_run()


@pytest.fixture(scope="module")
def two_datasets():
    return synthetic_run(datasets=("wiki", "news"), n_boot=10)


@pytest.fixture(scope="module")
def page(run):
    inputs, extra = run
    return report.render(*inputs, **extra)


# The page as a whole ----------------------------------------------------------------------


def test_page_needs_no_network(page):
    for tag, attributes in parse(page).tags:
        for name in ("src", "href"):
            value = attributes.get(name) or ""
            assert not re.match(r"^(https?:)?//", value), f"<{tag} {name}={value!r}>"
    assert "<link" not in page.split("<body>")[0]


def test_plotly_js_is_embedded_once_and_figure_ids_are_unique(page):
    assert page.count(PLOTLY_JS) == 1
    ids = figure_ids(page)
    assert len(ids) == len(set(ids)) == page.count("Plotly.newPlot(")
    div_ids = re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page)
    assert sorted(div_ids) == sorted(ids)
    per_model = ["roc", "budget", "change", "loss", "es"]
    assert len(ids) == len(MODELS) * (len(per_model) + len(BUDGETS))


def test_all_sections_are_present(page):
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}"><h2>' in page
        assert f'href="#{section_id}"' in page
    assert page.count('class="caption"') == len(SECTION_IDS)
    assert re.findall(r'<section id="([^"]+)">', page) == list(SECTION_IDS)


def test_each_section_is_a_module_with_its_template():
    """The contract that adding a section relies on: a module with its anchor, heading, caption and
    context, and a template of its own."""
    templates = set(page_module.ENVIRONMENT.list_templates())
    for section in SECTIONS:
        assert {"ID", "HEADING", "CAPTION", "PER_DATASET", "context"} <= set(vars(section)), section.__name__
        assert page_module.template_name(section) in templates
    assert [section.ID for section in SECTIONS] == list(SECTION_IDS)


def test_templates_escape_every_value():
    assert page_module.ENVIRONMENT.autoescape is True
    macros = page_module.ENVIRONMENT.get_template("macros.html.j2").module
    html = str(macros.table(Table([[Cell("<th>", header=True)]], [[Cell("<b>&", bold=True, note="'\"")]])))
    assert "<b>" not in html and "&lt;b&gt;&amp;" in html and "&lt;th&gt;" in html
    assert "&#39;&#34;" in html


def test_names_are_escaped(page):
    assert ODD_MODEL not in page
    assert "a&lt;b&gt;&amp;c" in page


def test_optional_tables_may_be_left_out(run):
    inputs, _ = run
    page = report.render(*inputs)
    assert "No per-layer AUROC table was given." in section(page, "layers")
    assert "No per-text parameter-change table was given." in section(page, "change")
    assert "No cross-validated top-K results were given." in section(page, "topk")
    assert "No benchmark records" in section(page, "summary")


def test_demo_sized_page_stays_small():
    inputs, extra = synthetic_run(
        models=("pythia-tiny", "llama-tiny"),
        budgets=("5", "10", "20", "30", "es"),
        n_texts=200,
        ks=(1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
        n_blocks=4,
        n_boot=20,
    )
    page = report.render(*inputs, **extra)
    assert len(page.encode("utf-8")) < 10_000_000
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}">' in page
    ids = figure_ids(page)
    assert len(ids) == len(set(ids)) == 2 * (5 + 5)


# Run summary ------------------------------------------------------------------------------


def test_summary_counts_texts_jobs_and_compute(run, page):
    inputs, _ = run
    fragment = section(page, "summary")
    datasets, rules = parse(fragment).tables
    header, row = texts_of(datasets)
    assert header[:3] == ["data set", "members", "non-members"]
    assert row[:3] == ["wiki", str(N_TEXTS // 2), str(N_TEXTS - N_TEXTS // 2)]
    assert row[-3:] == [str(len(MODELS) * len(BUDGETS) * N_TEXTS), str(len(MODELS) * len(BUDGETS) * N_TEXTS - 1), "1"]
    assert "loss" in row[5] and "blind" in row[5] and METHOD in row[5]
    assert "Jobs run: 57" in fragment and "jobs failed: 2" in fragment
    gpu_hours = (BENCHMARKS["s"] * BENCHMARKS["gpus"]).sum() / 3600
    assert f"GPU hours: {gpu_hours:.2f}" in fragment
    by_rule = {cells[0]: cells for cells in texts_of(rules)[1:]}
    assert [cells[0] for cells in texts_of(rules)[1:]] == ["train", "deltas", "report"]
    assert by_rule["train"][1] == "3" and by_rule["train"][2] == "2.00 h" and by_rule["train"][-1] == "3.00"
    assert by_rule["train"][5] == "21000"


# Tables 5.1 and 5.2 -----------------------------------------------------------------------


def test_table_5_1_shows_the_metrics(run, page):
    metrics = run[0][0]
    (table,) = parse(section(page, "table-5-1")).tables
    header, *rows = table
    assert [text for text, _ in header] == ["budget", *MODELS, "mean"]
    assert [row[0][0] for row in rows] == [BUDGET_NAMES[budget] for budget in BUDGETS]
    main = metrics[(metrics["method"] == METHOD) & (metrics["selection"] == "all")].set_index(["budget", "model"])
    for budget, row in zip(BUDGETS, rows):
        for model, (text, _) in zip(MODELS, row[1:]):
            assert text == expected_interval(main.loc[(budget, model)])
            assert AUROC_CELL.match(text)
        assert float(row[-1][0]) == pytest.approx(main.loc[budget, "auroc"].mean(), abs=0.005)


def test_table_5_1_marks_the_best_of_each_column(page):
    (table,) = parse(section(page, "table-5-1")).tables
    _, *rows = table
    for column in range(1, len(MODELS) + 2):
        values = [float(row[column][0].split()[0]) for row in rows]
        bold = [row[column][1] for row in rows]
        assert bold == [value == max(values) for value in values]


def table_5_2_rows(page):
    """Rows of table 5.2 with the selection label repeated where the table spans it over rows."""
    (table,) = parse(section(page, "table-5-2")).tables
    header, *rows = table
    width = len(header)
    full, label = [], None
    for row in rows:
        if len(row) == width:
            label = row[0]
        else:
            row = [label, *row]
        full.append(row)
    return header, full


def test_table_5_2_has_selection_budget_rows_then_one_baseline_row_each(run, page):
    metrics = run[0][0]
    header, rows = table_5_2_rows(page)
    assert [text for text, _ in header] == ["selection / method", "budget", *MODELS, "mean"]
    expected = [(selection, BUDGET_NAMES[budget]) for selection in SELECTIONS for budget in BUDGETS]
    baselines = ["loss", "zlib ratio", "Min-K% Prob", "Min-K%++", "SaMIA*zlib", "blind (bag of words)"]
    expected += [(label, "–") for label in baselines]
    assert [(row[0][0], row[1][0]) for row in rows] == expected

    cell = {(row[0][0], row[1][0]): [text for text, _ in row[2:]] for row in rows}
    topk = best_over_k(metrics, selection="topk-layers", model="tiny", budget="5")
    assert cell["topk-layers", "5 epochs"][0] == f"{expected_interval(topk)} (K={int(topk['k'])})*"
    attention = metrics[
        (metrics["selection"] == "attention") & (metrics["model"] == ODD_MODEL) & (metrics["budget"] == "30")
    ].iloc[0]
    assert cell["attention", "30 epochs"][1] == expected_interval(attention)
    for method, label in (("loss", "loss"), ("mink", "Min-K% Prob"), ("blind", "blind (bag of words)")):
        for index, model in enumerate(MODELS):
            best = best_over_k(metrics, method=method, model=model)
            text = expected_interval(best) + ("" if np.isnan(best["k"]) else f" (K={int(best['k'])})*")
            assert cell[label, "–"][index] == text
    fragment = section(page, "table-5-2")
    assert "optimistic" in fragment


def test_table_5_2_marks_the_best_of_each_column(page):
    header, rows = table_5_2_rows(page)
    for column in range(2, len(header)):
        values = [float(row[column][0].split()[0]) for row in rows]
        assert [row[column][1] for row in rows] == [value == max(values) for value in values]


# Blind baseline ---------------------------------------------------------------------------


def test_no_blind_warning_when_an_attack_beats_it(run, page):
    metrics = run[0][0]
    blind = metrics[metrics["method"] == "blind"]["auroc"].max()
    best = metrics[metrics["method"] != "blind"]["auroc"].max()
    assert blind < best
    assert 'class="warning"' not in page
    assert 'id="warnings"' not in page
    (table,) = parse(section(page, "blind")).tables
    assert texts_of(table)[1][1].startswith(f"{blind:.2f} [")
    assert texts_of(table)[2][1].startswith(f"{best:.2f} [")


def test_blind_warning_when_the_blind_baseline_is_at_least_the_best_attack():
    inputs, extra = synthetic_run(blind_separates=True)
    page = report.render(*inputs, **extra)
    warnings = page[page.index('<div id="warnings">') : page.index('<section id="summary">')]
    assert warnings.count('class="warning"') == 1 and "wiki" in warnings
    assert section(page, "blind").count('class="warning"') == 1
    assert "no attack result on this data set measures membership" in warnings
    assert 'href="#blind-d0"' in warnings and 'id="blind-d0"' in page
    assert page.index('id="warnings"') < page.index('<section id="table-5-1">')


def test_blind_warning_names_only_the_data_set_it_concerns(two_datasets):
    (metrics, *rest), extra = two_datasets
    metrics = metrics.copy()
    news_blind = (metrics["dataset"] == "news") & (metrics["method"] == "blind")
    metrics.loc[news_blind, ["auroc", "auroc_lo", "auroc_hi"]] = [0.99, 0.98, 1.0]
    page = report.render(metrics, *rest, **extra)
    warnings = page[page.index('<div id="warnings">') : page.index('<section id="summary">')]
    assert warnings.count('class="warning"') == 1
    assert "data set news" in warnings and "data set wiki" not in warnings
    blind = section(page, "blind")
    assert 'class="warning"' in blind[blind.index('id="blind-d1"') :]
    assert 'class="warning"' not in blind[: blind.index('id="blind-d1"')]


# Thesis comparison ------------------------------------------------------------------------


def thesis_meta(meta, dataset_spec, paths):
    meta = copy.deepcopy(meta)
    meta["config"]["datasets"]["wiki"] = dataset_spec
    for model, path in paths.items():
        meta["config"]["models"][model]["path"] = path
    return meta


WIKIMIA = {"hf": "swj0419/WikiMIA", "split": "WikiMIA_length32", "text": "input", "label": "label"}


def test_thesis_comparison_shows_published_and_run_numbers_for_shared_models(run):
    (metrics, *rest, meta), extra = run
    meta = thesis_meta(meta, WIKIMIA, {"tiny": "EleutherAI/pythia-6.9b", ODD_MODEL: "facebook/opt-6.7b"})
    fragment = section(report.render(metrics, *rest, meta, **extra), "thesis")
    (table,) = parse(fragment).tables
    top, sub, *rows = texts_of(table)
    # The thesis's column order, whatever the run's order.
    assert top == ["row", f"OPT-6.7B ({ODD_MODEL})", "Pythia-6.9B (tiny)"]
    assert sub == ["thesis", "this run"] * 2
    assert [row[0] for row in rows] == [row.label for row in thesis.THESIS_RESULTS]
    published = {row.label: row.published for row in thesis.THESIS_RESULTS}
    assert [row[1] for row in rows] == [f"{published[row[0]][1]:.2f}" for row in rows]  # OPT
    assert [row[3] for row in rows] == [f"{published[row[0]][2]:.2f}" for row in rows]  # Pythia
    assert rows[0][3] == "0.64" and rows[4][1] == "0.81"

    all_20 = metrics[(metrics["model"] == "tiny") & (metrics["selection"] == "all") & (metrics["budget"] == "20")].iloc[
        0
    ]
    assert rows[0][4] == expected_interval(all_20)
    topk = best_over_k(metrics, model=ODD_MODEL, selection="topk-elements", budget="es")
    assert rows[2][2] == f"{expected_interval(topk)} (K={int(topk['k'])})*"
    mink = metrics[(metrics["model"] == "tiny") & (metrics["method"] == "mink") & (metrics["k"] == 20)].iloc[0]
    assert rows[3][4] == f"{expected_interval(mink)} (K=20)"
    samia = metrics[(metrics["model"] == "tiny") & (metrics["method"] == "samia-zlib")].iloc[0]
    assert rows[4][4] == expected_interval(samia)
    assert "GPT-J-6B" in fragment and "mean column needs all four" in fragment


def test_thesis_comparison_has_the_mean_with_all_four_models():
    models = ("gptj", "opt", "pythia", "llama")
    (metrics, *rest, meta), extra = synthetic_run(models=models, budgets=("20", "30", "es"), n_texts=20, n_boot=10)
    meta = thesis_meta(meta, WIKIMIA, dict(zip(models, thesis.THESIS_MODELS)))
    (table,) = parse(section(report.render(metrics, *rest, meta, **extra), "thesis")).tables
    top, _, *rows = texts_of(table)
    assert top[-1] == "mean"
    assert [row[-2] for row in rows] == [f"{row.mean:.3f}" for row in thesis.THESIS_RESULTS]
    all_20 = metrics[(metrics["selection"] == "all") & (metrics["budget"] == "20")]["auroc"].mean()
    assert rows[0][-1] == f"{all_20:.3f}"


@pytest.mark.parametrize(
    "dataset_spec, paths, reason",
    [
        ({"path": "data/wiki.jsonl"}, {"tiny": "EleutherAI/pythia-6.9b"}, "is not the thesis's"),
        ({**WIKIMIA, "split": "WikiMIA_length64"}, {"tiny": "EleutherAI/pythia-6.9b"}, "is not the thesis's"),
        (WIKIMIA, {"tiny": "EleutherAI/pythia-160m"}, "none of this run's models"),
    ],
)
def test_no_thesis_comparison_without_its_data_set_and_models(run, dataset_spec, paths, reason):
    (metrics, *rest, meta), extra = run
    meta = thesis_meta(meta, dataset_spec, paths)
    fragment = section(report.render(metrics, *rest, meta, **extra), "thesis")
    assert "<table" not in fragment
    assert "No comparison" in fragment and reason in fragment


def test_published_numbers_are_the_thesis_tables():
    rows = {row.label: row for row in thesis.THESIS_RESULTS}
    assert rows["all parameters, 20 epochs"].published == (0.66, 0.51, 0.64, 0.53)
    assert rows["SaMIA*zlib"].mean == 0.743
    assert list(thesis.THESIS_MODELS) == [
        "EleutherAI/gpt-j-6b", "facebook/opt-6.7b", "EleutherAI/pythia-6.9b", "meta-llama/Llama-2-7b-hf",
    ]  # fmt: skip
    for row in thesis.THESIS_RESULTS:
        assert row.mean == pytest.approx(np.mean(row.published), abs=0.005)


# ROC curves -------------------------------------------------------------------------------


def test_roc_figure_has_the_best_selection_per_budget_and_the_main_baselines(run, page):
    metrics = run[0][0]
    for index, model in enumerate(MODELS):
        traces, layout = figure_json(page, f"roc-d0-m{index}")
        assert layout["xaxis2"]["type"] == "log" and layout["yaxis2"]["type"] == "log"
        linear = [trace for trace in traces if trace.get("xaxis", "x") == "x"]
        log = [trace for trace in traces if trace.get("xaxis") == "x2"]
        assert [trace["name"] for trace in linear] == [trace["name"] for trace in log]
        assert linear[0]["name"] == "chance"
        names = [trace["name"] for trace in linear[1:]]
        ours = metrics[(metrics["model"] == model) & (metrics["method"] == METHOD)]
        for budget, name in zip(BUDGETS, names):
            best = best_over_k(ours, budget=budget)
            assert name.startswith(f"{METHOD} {best['selection']}")
            assert name.endswith(f"{BUDGET_NAMES[budget]} ({best['auroc']:.2f})")
        mink = best_over_k(metrics, model=model, method="mink")
        assert names[len(BUDGETS) :] == [
            f"loss ({best_over_k(metrics, model=model, method='loss')['auroc']:.2f})",
            f"Min-K% Prob K={int(mink['k'])} ({mink['auroc']:.2f})",
            f"Min-K%++ K={int(best_over_k(metrics, model=model, method='minkpp')['k'])} "
            f"({best_over_k(metrics, model=model, method='minkpp')['auroc']:.2f})",
            f"SaMIA*zlib ({best_over_k(metrics, model=model, method='samia-zlib')['auroc']:.2f})",
            f"blind (bag of words) ({best_over_k(metrics, model=model, method='blind')['auroc']:.2f})",
        ]
        for trace in linear[1:]:
            fpr, tpr = array(trace["x"]), array(trace["y"])
            assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
            assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
        for trace in log[1:]:
            assert (array(trace["x"]) > 0).all() and (array(trace["y"]) > 0).all()


def test_roc_table_reads_tpr_at_low_fpr(run, page):
    metrics = run[0][0]
    tables = parse(section(page, "roc")).tables
    assert len(tables) == len(MODELS)
    rows = texts_of(tables[0])[1:]
    loss = best_over_k(metrics, model="tiny", method="loss")
    (loss_row,) = [row for row in rows if row[0] == "loss"]
    assert loss_row[1] == expected_interval(loss)
    assert loss_row[2] == f"{loss['tpr_at_1fpr']:.2f} (FPR {loss['fpr_at_1fpr']:.3f})"


def test_roc_curves_are_thinned_for_large_runs():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(5000, dtype=int), np.zeros(5000, dtype=int)]
    points = roc_points(labels, rng.normal(size=labels.size) + 0.3 * labels)
    assert len(points) > 2000
    thinned = roc.thin_roc(points)
    assert len(thinned) <= roc.ROC_POINTS
    assert thinned.iloc[0].tolist() == points.iloc[0].tolist()
    assert thinned.iloc[-1].tolist() == points.iloc[-1].tolist()
    assert (np.diff(thinned["fpr"]) >= 0).all() and (np.diff(thinned["tpr"]) >= 0).all()
    # Low false positive rates keep their detail for the log-log plot.
    assert (thinned["fpr"] < 0.01).sum() >= 20


# AUROC against budget ---------------------------------------------------------------------


def test_budget_figure_has_intervals_and_the_correlation(run, page):
    (metrics, _, _, correlation, _, _), _ = run
    traces, layout = figure_json(page, "budget-d0-m0")
    main = metrics[(metrics["model"] == "tiny") & (metrics["selection"] == "all")].set_index("budget")
    all_layers = traces[0]
    assert all_layers["name"] == f"{METHOD}, all layers"
    auroc = array(all_layers["y"])
    assert auroc == pytest.approx(main.loc[list(BUDGETS), "auroc"].to_numpy())
    assert array(all_layers["error_y"]["array"]) == pytest.approx(
        (main.loc[list(BUDGETS), "auroc_hi"] - auroc).to_numpy()
    )
    assert array(all_layers["error_y"]["arrayminus"]) == pytest.approx(
        (auroc - main.loc[list(BUDGETS), "auroc_lo"]).to_numpy()
    )
    assert layout["xaxis"]["ticktext"] == [BUDGET_NAMES[budget] for budget in BUDGETS]
    r = correlation[correlation["model"] == "tiny"].iloc[0]
    assert layout["title"]["text"] == f"tiny: r = {r['r']:.2f}, p = {r['p']:.2g}"
    (table,) = parse(section(page, "budget")).tables
    assert texts_of(table)[1] == ["tiny", f"{r['r']:.2f}", f"{r['p']:.2g}", str(int(r["n"]))]
    mean = correlation[
        (correlation["model"] == MEAN_OVER_MODELS)
        & (correlation["selection"] == "all")
        & (correlation["dataset"] == "wiki")
    ].iloc[0]
    assert texts_of(table)[-1] == [
        f"{MEAN_OVER_MODELS} (thesis 5.2.4: r = 0.954, p = 0.046)",
        f"{mean['r']:.2f}",
        f"{mean['p']:.2g}",
        str(int(mean["n"])),
    ]


# Members vs non-members -------------------------------------------------------------------


def test_change_boxes_summarise_members_and_non_members(run, page):
    change = run[1]["change"]
    traces, layout = figure_json(page, "change-d0-m1")
    visible = [trace for trace in traces if trace.get("visible", True) is True]
    assert len(visible) == 2 * len(BUDGETS)
    for position, budget in enumerate(BUDGETS):
        for trace, label in zip(visible[2 * position : 2 * position + 2], (1, 0)):
            assert trace["x"] == ["members" if label else "non-members"]
            values = change[(change["model"] == ODD_MODEL) & (change["budget"] == budget) & (change["label"] == label)][
                "l2_total"
            ]
            assert array(trace["median"])[0] == pytest.approx(values.median())
            assert array(trace["q1"])[0] == pytest.approx(values.quantile(0.25))
            assert array(trace["q3"])[0] == pytest.approx(values.quantile(0.75))
    assert [button["label"] for button in layout["updatemenus"][0]["buttons"]] == ["l2_total", "mean_l2", "mean_norm"]
    assert len(traces) == 3 * 2 * len(BUDGETS)


def test_box_stats_whiskers_stop_at_the_last_value_within_1_5_iqr():
    stats = box_stats(np.r_[np.arange(1.0, 11.0), 100.0])
    assert (stats["q1"], stats["median"], stats["q3"]) == (3.5, 6.0, 8.5)
    assert (stats["lowerfence"], stats["upperfence"], stats["n"]) == (1.0, 10.0, 11)
    assert box_stats(np.array([np.nan])) is None


def test_ttest_table_lists_every_model_and_budget(run, page):
    ttest = run[0][2]
    (table,) = parse(section(page, "change")).tables
    rows = texts_of(table)[1:]
    assert len(rows) == len(MODELS) * len(BUDGETS)
    first = ttest[(ttest["model"] == "tiny") & (ttest["budget"] == "5")].iloc[0]
    assert rows[0] == [
        "tiny", "5 epochs", str(first["n_members"]), str(first["n_nonmembers"]), f"{first['mean_members']:.4g}",
        f"{first['mean_nonmembers']:.4g}", f"{first['t']:.2f}", f"{first['p']:.2g}",
    ]  # fmt: skip


# Per-layer heat map -----------------------------------------------------------------------


def test_layer_heatmap_cells_are_the_mean_auroc_of_their_layers(run, page):
    layers = run[1]["layers"]
    budget_index = 2
    traces, layout = figure_json(page, f"layers-d0-m1-b{budget_index}")
    (heatmap,) = traces
    assert heatmap["x"] == [NO_BLOCK, *map(str, range(N_BLOCKS))]
    assert heatmap["y"] == ["attention", "mlp", "norm", "embedding"]
    assert heatmap["zmid"] == 0.5
    assert heatmap["zmax"] - 0.5 == pytest.approx(0.5 - heatmap["zmin"])
    chosen = layers[(layers["model"] == ODD_MODEL) & (layers["budget"] == BUDGETS[budget_index])]
    z = array(heatmap["z"]).astype(float)
    for row, group in enumerate(heatmap["y"]):
        for column, block in enumerate(heatmap["x"]):
            number = -1 if block == NO_BLOCK else int(block)
            cell = chosen[(chosen["group"] == group) & (chosen["block"] == number)]
            if cell.empty:
                assert np.isnan(z[row, column])
            else:
                assert z[row, column] == pytest.approx(cell["auroc"].mean())
                for name in cell["layer"]:
                    assert name in heatmap["text"][row][column]
    assert layout["title"]["text"] == f"{plots.label(ODD_MODEL)}, {BUDGET_NAMES[BUDGETS[budget_index]]}"


def test_all_heatmaps_of_a_data_set_share_one_colour_range(page):
    ranges = {
        (heatmap["zmin"], heatmap["zmax"])
        for div_id in figure_ids(page)
        if div_id.startswith("layers-")
        for heatmap in figure_json(page, div_id)[0]
    }
    assert len(ranges) == 1


# Training ---------------------------------------------------------------------------------


def test_loss_curves_show_the_median_per_epoch_of_the_largest_fixed_budget(run, page):
    texts = run[0][4]
    traces, layout = figure_json(page, "loss-d0-m0")
    assert "30 epochs" in layout["title"]["text"]
    medians = [trace for trace in traces if trace.get("name", "").endswith("median")]
    assert [trace["name"] for trace in medians] == ["members, median", "non-members, median"]
    chosen = texts[(texts["model"] == "tiny") & (texts["budget"] == "30")]
    for trace, label in zip(medians, (1, 0)):
        losses = np.array(chosen[chosen["label"] == label]["losses"].tolist())
        assert array(trace["x"]).tolist() == list(range(1, 31))
        assert array(trace["y"]) == pytest.approx(np.median(losses, axis=0))
    bands = [trace for trace in traces if trace.get("fill") == "toself"]
    assert len(bands) == 2


def test_early_stopping_epochs_are_counted_per_class(run, page):
    texts = run[0][4]
    traces, _ = figure_json(page, "es-d0-m1")
    chosen = texts[(texts["model"] == ODD_MODEL) & (texts["budget"] == "es")]
    for trace, label in zip(traces, (1, 0)):
        counts = chosen[chosen["label"] == label]["epochs_run"].value_counts().sort_index()
        assert array(trace["x"]).tolist() == counts.index.tolist()
        assert array(trace["y"]).tolist() == counts.tolist()
        assert trace["name"].startswith("members" if label else "non-members")


# Top-K ------------------------------------------------------------------------------------


def test_topk_table_sets_the_cross_validated_k_beside_the_optimistic_one(run, page):
    topk = run[1]["topk_cv"]
    fragment = section(page, "topk")
    (table,) = parse(fragment).tables
    header, *rows = texts_of(table)
    assert len(rows) == len(topk)
    assert "optimistic" in fragment.lower() or "Optimistic" in fragment
    by_key = {(row[0], row[1], row[2]): row for row in rows}
    for _, expected in topk[topk["dataset"] == "wiki"].iterrows():
        row = by_key[expected["model"], BUDGET_NAMES[expected["budget"]], expected["selection"]]
        assert row[3:] == [
            f"{expected['k_eval']:g}",
            f"{expected['auroc_eval']:.2f}",
            expected["k_folds"],
            f"{expected['auroc_cv']:.2f} [{expected['auroc_cv_lo']:.2f}, {expected['auroc_cv_hi']:.2f}]",
            f"{expected['auroc_eval'] - expected['auroc_cv']:+.2f}",
        ]
    assert [row[0] for row in rows] == ["tiny"] * (len(rows) // 2) + [ODD_MODEL] * (len(rows) // 2)


# Failures and configuration ---------------------------------------------------------------


def test_failed_text_is_listed(page):
    (table,) = parse(section(page, "failed")).tables
    assert texts_of(table)[1] == ["tiny", "20 epochs", FAILED["text_id"], FAILED["failure"], "3"]
    assert len(table) == 2


def test_no_failures_say_none(run):
    (metrics, scores, ttest, correlation, texts, meta), extra = run
    texts = texts.assign(status="ok")
    page = report.render(metrics, scores, ttest, correlation, texts, meta, **extra)
    assert "<p>none</p>" in section(page, "failed")


def test_many_failures_are_counted_and_the_list_is_capped(run):
    (metrics, scores, ttest, correlation, texts, meta), extra = run
    texts = texts.assign(status="failed", failure="out of memory", failed_epoch=1)
    fragment = section(report.render(metrics, scores, ttest, correlation, texts, meta, **extra), "failed")
    counts, listing = parse(fragment).tables
    assert texts_of(counts)[1] == ["tiny", "5 epochs", "out of memory", str(N_TEXTS)]
    assert len(listing) == 1 + FAILED_ROWS
    assert f"The first {FAILED_ROWS} of {len(texts)} failed training runs" in fragment


def test_fp16_skipped_steps_are_listed(run):
    (metrics, scores, ttest, correlation, texts, meta), extra = run
    texts = texts.assign(status="ok", skipped_steps=0, n_chunks=1)
    texts.loc[texts.index[0], "skipped_steps"] = 1
    fragment = section(report.render(metrics, scores, ttest, correlation, texts, meta, **extra), "failed")
    assert "<p>none</p>" in fragment and "Steps skipped by the fp16 loss scaler: 1 texts" in fragment
    (table,) = parse(fragment).tables
    row = texts.iloc[0]
    steps = int(row["epochs_run"])
    assert texts_of(table)[1] == [
        row["model"],
        budget_heading(row["budget"]),
        row["text_id"],
        "1",
        str(steps),
        f"{1 / steps:.0%}",
    ]
    # None skipped: nothing shown.
    quiet = section(
        report.render(metrics, scores, ttest, correlation, texts.assign(skipped_steps=0), meta, **extra), "failed"
    )
    assert "Steps skipped by the fp16 loss scaler" not in quiet


def test_replays_that_ended_elsewhere_are_counted(run):
    """Early-stopping runs whose replay of the best epoch ended with another loss (replay_exact
    False) are counted by model and budget; runs that replayed exactly, or replayed nothing, are not."""
    (metrics, scores, ttest, correlation, texts, meta), extra = run
    texts = texts.assign(status="ok", replay_exact=None)
    texts["replay_exact"] = texts["replay_exact"].astype(object)
    texts.loc[texts.index[:3], "replay_exact"] = False
    texts.loc[texts.index[3:5], "replay_exact"] = True
    fragment = section(report.render(metrics, scores, ttest, correlation, texts, meta, **extra), "failed")
    assert "replay of the best epoch ended with another loss" in fragment and ": 3 runs" in fragment
    (table,) = parse(fragment).tables
    row = texts.iloc[0]
    assert texts_of(table)[1] == [row["model"], budget_heading(row["budget"]), "3"]
    for quiet in (texts.assign(replay_exact=True), texts.assign(replay_exact=None), texts.drop(columns="replay_exact")):
        fragment = section(report.render(metrics, scores, ttest, correlation, quiet, meta, **extra), "failed")
        assert "not reproducible bit for bit" not in fragment


def test_configuration_and_versions_are_shown(page):
    fragment = section(page, "config")
    assert "local/tiny" in fragment
    assert ["torch", "2.5"] in texts_of(parse(fragment).tables[0])


# Several data sets, figures for export, helpers --------------------------------------------


def test_several_datasets_get_one_block_each(two_datasets):
    inputs, extra = two_datasets
    page = report.render(*inputs, **extra)
    for section_id in ("blind", "table-5-1", "thesis", "roc", "layers", "topk", "failed"):
        fragment = section(page, section_id)
        assert f'id="{section_id}-d0"' in fragment and f'id="{section_id}-d1"' in fragment
        assert "<h3>Data set wiki</h3>" in fragment and "<h3>Data set news</h3>" in fragment
    ids = figure_ids(page)
    assert len(ids) == len(set(ids)) == 2 * len(MODELS) * (5 + len(BUDGETS))
    summary = parse(section(page, "summary")).tables[0]
    assert [row[:3] for row in texts_of(summary)[1:]] == [["wiki", "20", "20"], ["news", "20", "20"]]


def test_figures_are_standalone_documents_keyed_by_the_page_ids(run, page):
    inputs, extra = run
    documents = report.figures(*inputs, **extra)
    assert sorted(documents) == sorted(figure_ids(page))
    for name, html in documents.items():
        assert re.fullmatch(r"[a-z0-9-]+", name)
        assert html.lstrip().lower().startswith("<!doctype html>") and html.count(PLOTLY_JS) == 1
        assert html.count("Plotly.newPlot(") == 1 and f'"{name}"' in html
    small, extra = synthetic_run(models=("tiny",), budgets=("5",), n_texts=10, n_boot=10)
    beside = report.figures(*small, **extra, include_plotlyjs="directory")
    assert all('src="plotly.min.js"' in html and PLOTLY_JS not in html for html in beside.values())


def test_duplicate_metrics_are_refused(run):
    (metrics, *rest), extra = run
    with pytest.raises(ValueError, match="more than one row"):
        report.render(pd.concat([metrics, metrics.iloc[:1]]), *rest, **extra)


def test_budgets_are_ordered_numerically_with_early_stopping_last():
    assert ordered_budgets(["es", "30", "5", "10", 20]) == ["5", "10", "20", "30", "es"]


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


# Safety --------------------------------------------------------------------------------------

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2><b>bold?</b>"


def test_html_in_inputs_stays_inert_in_chromium(run, tmp_path):
    """Markup that reaches the page from the inputs (the run's title, a data set's path and
    text field in the config, a failure message) is shown as text in a real browser: no
    script runs, nothing becomes an element. The candidate texts themselves are not shown by
    the report (text ids are hashes of them)."""
    from playwright.sync_api import sync_playwright
    from test_workflow import CHROMIUM_FLAGS

    (metrics, scores, ttest, correlation, texts, meta), extra = run
    meta = copy.deepcopy(meta)
    meta["title"] = f"Run {HOSTILE}"
    meta["config"]["datasets"]["wiki"] = {"path": f"data/{HOSTILE}.jsonl", "text": HOSTILE}
    failed = texts["status"] == "failed"
    texts = texts.assign(failure=texts["failure"].where(~failed, f"loss is NaN {HOSTILE}"))
    page_path = tmp_path / "report.html"
    page_path.write_text(report.render(metrics, scores, ttest, correlation, texts, meta, **extra))

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for this test (.ci/run installs it)"
    dialogs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        pwned = page.evaluate("() => window.__pwned")
        injected = page.evaluate("() => document.querySelectorAll('img[src=x], b').length")
        shown = page.text_content("body")  # the configuration's <details> included
        browser.close()
    assert pwned is None and not dialogs
    assert injected == 0
    assert shown.count(HOSTILE) >= 4  # the heading, the config (path and text field) and the failure, as text


def test_tables_say_which_texts_each_auroc_covers(run, page):
    (_, _, _, _, texts, _), _ = run
    failed = texts[
        (texts["status"] == "failed") & (texts["model"] == FAILED["model"]) & (texts["budget"] == FAILED["budget"])
    ]
    total = len(texts[(texts["model"] == FAILED["model"]) & (texts["budget"] == FAILED["budget"])])
    assert len(failed) >= 1
    expected = f"{FAILED['model']}, 20 epochs: {total - len(failed)} of {total} texts ({len(failed)} failed)"
    for name in ("table-5-1", "table-5-2"):
        assert expected in section(page, name), name
        assert "the baselines score every text" in section(page, name)


# Training settings (optimizers:) and supervised classifiers ---------------------------------


@pytest.fixture(scope="module")
def settings_page(run):
    return settings_run(run)


def settings_run(run, benchmarks=None):
    """The run with a second training setting (sgd, budget 20) and supervised classifiers on both."""
    (metrics, scores, ttest, correlation, texts, meta), extra = run
    extra = {**extra, "benchmarks": benchmarks} if benchmarks is not None else extra
    rng = np.random.default_rng(3)
    ours = scores[(scores["method"] == METHOD) & (scores["budget"] == "20")]
    sgd = ours.assign(method="param-delta:sgd", score=rng.normal(size=len(ours)) + 2.0 * ours["label"])
    learned = [
        ours[ours["selection"] == "all"].assign(
            method=method, selection=np.nan, score=rng.normal(size=n) + shift * labels
        )
        for method, shift in [("supervised-logistic", 3.0), ("supervised-logistic:sgd", 4.0)]
        for n, labels in [(int((ours["selection"] == "all").sum()), ours[ours["selection"] == "all"]["label"])]
    ]
    scores = pd.concat([scores, sgd, *learned], ignore_index=True)
    metrics = summarise(scores, ["dataset", "model", "budget", "method", "selection", "k"], n_boot=20)
    metrics["n_failed"] = 0
    topk = topk_cv_table(scores, n_boot=20)
    meta = {
        **meta,
        "config": {**meta["config"], "optimizers": {"sgd": {"optimizer": "sgd", "lr": 0.01, "budgets": [20]}}},
    }
    page = report.render(metrics, scores, ttest, correlation, texts, meta, **{**extra, "topk_cv": topk})
    return page, metrics


def test_optimizer_section_compares_the_settings_where_both_ran(settings_page):
    page, metrics = settings_page
    rows = texts_of(parse(section(page, "optimizer")).tables[0])
    assert rows[0][:4] == ["model", "budget", "setting", "what it changes"]
    body = rows[1:]
    assert {row[1] for row in body} == {"20 epochs"}  # only where more than one setting ran
    assert [row[2] for row in body] == ["default", "sgd"] * len(MODELS)
    assert {row[3] for row in body if row[2] == "sgd"} == {"optimizer sgd, lr 0.01"}
    for row in body:
        method = "param-delta" if row[2] == "default" else "param-delta:sgd"
        expected = metrics[
            (metrics["model"] == row[0])
            & (metrics["budget"] == "20")
            & (metrics["method"] == method)
            & (metrics["selection"] == "all")
        ]
        assert row[4] == expected_interval(expected.iloc[0])
        assert AUROC_CELL.match(row[5])
    # A second setting is no baseline.
    assert "param-delta:sgd" not in section(page, "table-5-2")


def test_supervised_section_is_apart_from_the_unsupervised_scores(settings_page):
    page, metrics = settings_page
    rows = texts_of(parse(section(page, "supervised")).tables[0])
    assert rows[0] == [
        "model",
        "budget",
        "setting",
        "param-delta, all layers (no labels)",
        "supervised-logistic [95% interval]",
    ]
    body = rows[1:]
    assert {(row[1], row[2]) for row in body} == {("20 epochs", "default"), ("20 epochs", "sgd")}
    for row in body:
        method = "supervised-logistic" if row[2] == "default" else "supervised-logistic:sgd"
        expected = metrics[(metrics["model"] == row[0]) & (metrics["budget"] == "20") & (metrics["method"] == method)]
        assert row[4] == expected_interval(expected.iloc[0])
    assert "Best black-box attack" in section(page, "supervised")
    assert "supervised-logistic" not in section(page, "table-5-2")


def test_without_settings_or_classifiers_the_sections_say_so(page):
    assert "under one setting only" in section(page, "optimizer")
    assert "No supervised classifier was run" in section(page, "supervised")


def test_what_works_ranks_every_method_once_with_its_cost():
    (metrics, *_), _ = run = synthetic_run()
    n_texts = N_TEXTS
    bench = pd.DataFrame(
        [
            *(dict(rule="train", job=f"wiki/{model}/{setting}/{budget}/s{shard}", s=30.0, gpus=2)
              for model in MODELS for setting in ("default", "sgd") for budget in BUDGETS for shard in (1, 2)),
            *(dict(rule="logprob_scores", job=f"wiki/{model}", s=12.0, gpus=1) for model in MODELS),
            *(dict(rule="samia", job=f"wiki/{model}/s{shard}", s=50.0, gpus=1) for model in MODELS for shard in (1, 2)),
        ]
    ).assign(max_rss=100.0, cpu_time=1.0)  # fmt: skip
    page, metrics = settings_run(run, bench)
    rows = texts_of(parse(section(page, "what-works")).tables[0])
    assert rows[0] == [
        "",
        "model",
        "method",
        "best variant",
        "AUROC [95% interval]",
        "device-s per text",
        "learns from labels",
    ]
    body = rows[1:]
    aurocs = [float(row[4].split()[0]) for row in body]
    assert aurocs == sorted(aurocs, reverse=True)
    methods = [(row[1], row[2]) for row in body]
    assert len(methods) == len(set(methods))
    assert [row for row in body if row[2] == "blind"] and len([row for row in body if row[2] == "blind"]) == 1
    expected = {
        (model, method) for model, method in metrics[["model", "method"]].itertuples(index=False) if method != "blind"
    }
    assert {m for m in methods if m[1] != "blind"} == expected
    for row in body:
        method = row[2]
        if method in ("loss", "zlib", "mink", "minkpp"):
            assert float(row[5]) == pytest.approx(12.0 / n_texts, rel=1e-2)
        elif method == "samia-zlib":
            assert float(row[5]) == pytest.approx(100.0 / n_texts, rel=1e-2)
        elif method.startswith(("param-delta", "supervised-")):
            assert float(row[5]) == pytest.approx(2 * 30.0 * 2 / n_texts, rel=1e-2)  # two shards, two GPUs
        assert row[6] == ("yes" if method.startswith("supervised-") or method == "blind" else "no")


def test_the_supervised_sections_reference_is_a_black_box_attack(settings_page):
    from paramdelta.report.data import run_data
    from paramdelta.report.sections import supervised

    _, metrics = settings_page
    white_box = metrics[metrics["method"] == "loss"].assign(method="gradnorm", selection="all", auroc=0.99)
    data = run_data({"config": {}}, metrics=pd.concat([metrics, white_box], ignore_index=True), scores=None,
                    ttest=None, correlation=None, texts=None)  # fmt: skip
    reference = supervised.context(data.for_dataset("wiki", 0))["reference"]
    assert reference.startswith("Best black-box attack") and "gradnorm" not in reference
