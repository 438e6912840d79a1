"""The attribution page (paramdelta.report.attribution) from synthetic influence and correlation tables."""

import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from paramdelta.report import attribution, page
from paramdelta.report.attribution import paper
from paramdelta.report.attribution.data import METHODS, TRUTH, UNLEARNING
from paramdelta.report.attribution.sections import half_width
from paramdelta.report.data import run_data

ODD = "<script>alert(1)</script>"
PM = "\u00a0±\u00a0"  # mean ± std, kept on one line
TRAININGS = ("similar, same format", "similar, other format", "dissimilar, same format", "dissimilar, other format")
TRUTH_INFLUENCE = np.array([1.4, 0.5, -1.0, -0.9])
EPOCHS = (1, 2, 3)
SEEDS = (0, 1, 2, 3)
DEFAULT_SETTING = ("adam", 5e-5)
SWEEP = {"optimizer": [("sgd", 5e-5), ("rmsprop", 5e-5)], "lr": [("adam", 1e-5), ("adam", 1e-4)]}
EXPERIMENTS = {
    "tasks": {"title": "Fine-tuning tasks", "sizes": dict.fromkeys(TRAININGS, 256)},
    "genres": {"title": "Pre-training genres", "sizes": dict(zip(TRAININGS, (100, 200, 300, 400)))},
}
EVALUATIONS = {"tasks": ("after",), "genres": ("letters", ODD, "diaries")}
ONE_EVALUATION = {"tasks": ("after",)}
SECTION_IDS = ("experiments", "table-2", "table-3", "figure-2", "figure-3", "table-4")


def synthetic_influence(seeds=SEEDS, trainings=TRAININGS, sweep=True, evaluations=EVALUATIONS, seed=0) -> pd.DataFrame:
    """Influence of every method: the truth plus noise, UnTrac's closing in on it epoch by epoch."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(experiment, method, variant, setting, evaluation, run, epoch, values):
        optimizer, lr = setting if method in UNLEARNING else ("", math.nan)
        for training, value in zip(trainings, values):
            rows.append((experiment, method, variant, optimizer, lr, evaluation, training, run, epoch, value))

    for experiment, names in evaluations.items():
        for evaluation in names:
            for run in seeds:
                truth = TRUTH_INFLUENCE[: len(trainings)] + rng.normal(0, 0.1, len(trainings))
                add(experiment, TRUTH, "default", None, evaluation, run, math.nan, truth)
                for method in ("graddot", "gradcos", "tracin", "hif-arnoldi"):
                    add(experiment, method, "default", None, evaluation, run, math.nan, rng.normal(size=len(truth)))
                settings = [("default", DEFAULT_SETTING)]
                if sweep and experiment == "tasks":
                    settings += [(variant, setting) for variant, values in SWEEP.items() for setting in values]
                for variant, setting in settings:
                    for method in UNLEARNING:
                        for epoch in EPOCHS:
                            noise = rng.normal(0, 1.0 / epoch, len(truth))
                            add(experiment, method, variant, setting, evaluation, run, epoch, 0.01 * (truth + noise))
    columns = ["experiment", "method", "variant", "optimizer", "lr", "evaluation", "training", "seed", "epoch"]
    return pd.DataFrame(rows, columns=[*columns, "influence"])


def correlation_of(influence: pd.DataFrame) -> pd.DataFrame:
    """Pearson r with leave-one-out across training sets per seed, then mean, std and count over seeds."""
    sets = ["experiment", "evaluation", "seed", "training"]
    truth = influence.loc[influence["method"] == TRUTH, [*sets, "influence"]].rename(columns={"influence": "truth"})
    rows = influence[influence["method"] != TRUTH].merge(truth, on=sets)
    setting = ["experiment", "method", "variant", "optimizer", "lr", "evaluation", "epoch"]
    groups = rows.groupby([*setting, "seed"], dropna=False, sort=False)
    dx = rows["influence"] - groups["influence"].transform("mean")
    dy = rows["truth"] - groups["truth"].transform("mean")
    sums = rows.assign(xy=dx * dy, xx=dx**2, yy=dy**2, n=1).groupby([*setting, "seed"], dropna=False, sort=False)
    sums = sums[["xy", "xx", "yy", "n"]].sum().reset_index()
    r = (sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])).where(sums["n"] >= 3)
    per_seed = sums.assign(r=r).groupby(setting, dropna=False, sort=False)["r"]
    return per_seed.agg(mean="mean", std="std", n_seeds="count").reset_index()


def write_inputs(tmp_path, influence, correlation=None):
    paths = tmp_path / "influence.csv", tmp_path / "correlation.csv"
    influence.to_csv(paths[0], index=False)
    (correlation_of(influence) if correlation is None else correlation).to_csv(paths[1], index=False)
    return paths


class _Tables(HTMLParser):
    """The text of every cell of every table, row by row."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert match, section_id
    return match.group(1)


def tables(html: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def row(table, name: str) -> list[str]:
    return next(cells for cells in table if cells[0] == name)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    influence = synthetic_influence()
    paths = write_inputs(tmp_path_factory.mktemp("attribution"), influence)
    return influence, correlation_of(influence), paths


@pytest.fixture(scope="module")
def html(inputs, tmp_path_factory):
    _, _, (influence_csv, correlation_csv) = inputs
    out = tmp_path_factory.mktemp("report") / "attribution.html"
    attribution.write(influence_csv, correlation_csv, out, title="Demo run", experiments=EXPERIMENTS)
    return out.read_text(encoding="utf-8")


def render(influence, correlation=None, experiments=EXPERIMENTS, tmp_path=None) -> str:
    """The page from tables that went through CSV files, as the workflow's do."""
    loaded = attribution.load(*write_inputs(tmp_path, influence, correlation))
    return attribution.render(**loaded, title="Run", experiments=experiments, generated="now")


def test_every_section_is_present_with_header_and_plotly_once(html):
    assert re.findall(r'<section id="([^"]+)">', html) == list(SECTION_IDS)
    assert html.count('class="caption"') == len(SECTION_IDS)
    assert "<h1>Demo run</h1>" in html
    assert re.search(r"<p>Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC</p>", html)
    assert html.count(get_plotlyjs()) == 1
    assert not re.search(r'(src|href)="(https?:)?//', html.split("</head>")[1])


def test_table_2_has_mean_and_std_of_r_at_the_last_epoch(inputs, html):
    _, correlation, _ = inputs
    ours, published = tables(section(html, "table-2"))
    assert ours[0][1:] == ["Fine-tuning tasks (equal sizes)", "Pre-training genres (unequal sizes)"]
    assert ours[1] == ["after", "letters", ODD, "diaries"]
    assert [cells[0] for cells in ours[2:]] == ["GradDot", "GradCos", "HIF (Arnoldi)", "TracIn", "UnTrac", "UnTrac-Inv"]
    last = correlation[
        (correlation["experiment"] == "genres")
        & (correlation["evaluation"] == ODD)
        & (correlation["method"] == "untrac")
        & (correlation["variant"] == "default")
        & (correlation["epoch"] == EPOCHS[-1])
    ].iloc[0]
    assert row(ours, "UnTrac")[3] == f"{last['mean']:.2f}{PM}{last['std']:.2f}"
    # The best of each column is bold: one column's bold cell holds its largest mean.
    column = section(html, "table-2").split("<tbody>")[1]
    assert column.count("<strong>") >= 4
    assert row(published, "UnTrac-Inv") == [
        "UnTrac-Inv",
        *(f"{m:.3f}{PM}{s:.3f}" for m, s in paper.TABLE_2["untrac-inv"]),
    ]
    assert "the paper's table 2 (OPT-125M pre-trained on 8 real corpora), not this run" in section(html, "table-2")


def test_table_3_standardises_per_seed_then_averages(inputs, html):
    influence, _, _ = inputs
    found = tables(section(html, "table-3"))
    assert len(found) == 4 + 1  # one per (experiment, evaluation set), then the paper's
    letters = found[1]
    assert letters[0] == ["method", *TRAININGS]
    assert [cells[0] for cells in letters[1:]][-1] == "leave-one-out (truth)"
    truth = influence[(influence["method"] == TRUTH) & (influence["evaluation"] == "letters")]
    z = truth.groupby("seed")["influence"].transform(lambda values: (values - values.mean()) / values.std(ddof=0))
    expected = z.groupby(truth["training"]).mean()
    assert row(letters, "leave-one-out (truth)")[1:] == [f"{expected[t]:.2f}" for t in TRAININGS]
    assert "Training set sizes: unequal: similar, same format 100" in section(html, "table-3")
    assert row(found[-1], "leave-one-out (truth)")[1:] == ["1.416", "0.462", "-1.031", "-0.847"]


def test_figures_have_a_line_per_training_set_and_method_with_bands(html):
    influence = section(html, "figure-2")
    assert influence.count("Plotly.newPlot(") == 4
    # Two panels of four training sets each, a band behind every line.
    first = influence.split("Plotly.newPlot(")[1]
    assert first.count('"fill":"toself"') == 8
    assert first.count('"mode":"lines+markers"') == 8
    correlation = section(html, "figure-3")
    assert correlation.count("Plotly.newPlot(") == 4
    first = correlation.split("Plotly.newPlot(")[1]
    assert first.count('"fill":"toself"') == 2 and '"dash":"dash"' in first


def test_table_4_sweeps_optimizers_then_learning_rates(inputs, html):
    _, correlation, _ = inputs
    found = tables(section(html, "table-4"))
    ours = found[0]
    assert ours[0] == ["method", "optimizer", "learning rate"]
    assert ours[1] == ["sgd", "rmsprop", "adam", "1e-05", "5e-05", "1e-04"]
    # The default setting (Adam, 5e-5) was not repeated in the sweep: its column comes from the main run, marked.
    default = correlation[
        (correlation["method"] == "untrac-inv") & (correlation["variant"] == "default")
        & (correlation["experiment"] == "tasks") & (correlation["epoch"] == EPOCHS[-1])
    ].iloc[0]  # fmt: skip
    assert row(ours, "UnTrac-Inv")[3] == f"{default['mean']:.2f}{PM}{default['std']:.2f}†"
    sgd = correlation[(correlation["method"] == "untrac") & (correlation["optimizer"] == "sgd")]
    sgd = sgd[sgd["epoch"] == EPOCHS[-1]].iloc[0]
    assert row(ours, "UnTrac")[1] == f"{sgd['mean']:.2f}{PM}{sgd['std']:.2f}"
    assert "the sweep did not repeat" in section(html, "table-4")
    assert row(found[1], "UnTrac")[1] == f"-0.147{PM}0.014"


def test_values_are_escaped(html):
    body = html.split("</head>")[1]
    assert ODD not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_no_sweep_no_table_4(tmp_path):
    html = render(synthetic_influence(sweep=False, evaluations=ONE_EVALUATION), tmp_path=tmp_path)
    assert '<section id="table-4">' not in html and 'href="#table-4"' not in html
    assert re.findall(r'<section id="([^"]+)">', html) == list(SECTION_IDS[:-1])


def test_one_seed_has_no_std_and_no_band(tmp_path):
    html = render(synthetic_influence(seeds=(0,), evaluations=ONE_EVALUATION), tmp_path=tmp_path)
    assert '"fill":"toself"' not in html
    ours = tables(section(html, "table-2"))[0]
    assert re.fullmatch(r"-?\d\.\d\d", row(ours, "UnTrac")[1])
    assert "Fine-tuning tasks: one seed" in section(html, "experiments")


def test_undefined_r_reads_n_a(tmp_path):
    influence = synthetic_influence(evaluations=ONE_EVALUATION, sweep=False)
    correlation = correlation_of(influence)
    correlation.loc[correlation["method"] == "tracin", ["mean", "std"]] = math.nan
    html = render(influence, correlation, tmp_path=tmp_path)
    assert row(tables(section(html, "table-2"))[0], "TracIn")[1:] == ["n/a"]


def test_fewer_than_three_training_sets_read_n_a(tmp_path):
    experiments = {name: {"title": meta["title"], "sizes": {TRAININGS[0]: None}} for name, meta in EXPERIMENTS.items()}
    influence = synthetic_influence(seeds=(0, 1), trainings=TRAININGS[:2], sweep=False, evaluations=ONE_EVALUATION)
    # Whatever the table says (r is ±1 with two points), the page says n/a.
    correlation = correlation_of(influence).assign(mean=1.0, std=0.0)
    html = render(influence, correlation, experiments, tmp_path=tmp_path)
    ours = tables(section(html, "table-2"))[0]
    assert len(ours) > 2 and all(cell == "n/a" for cells in ours[2:] for cell in cells[1:])
    assert "No defined correlation" in section(html, "figure-3")
    assert "fewer than 3 is undefined" in section(html, "experiments")
    assert "sizes not given" in section(html, "table-3")


def test_missing_columns_are_refused(inputs, tmp_path):
    influence, correlation, _ = inputs
    with pytest.raises(ValueError, match="influence table lacks columns \\['seed'\\]"):
        attribution.render(influence.drop(columns="seed"), correlation, title="Run", experiments={})


def test_half_width_is_the_t_interval():
    assert half_width([2.0], [4])[0] == pytest.approx(3.182446 * 2.0 / 2.0, rel=1e-5)
    assert np.isnan(half_width([2.0], [1])[0])


def test_paper_tables_hold_every_method():
    assert set(paper.TABLE_2) == set(METHODS)
    assert all(len(values) == 6 for values in paper.TABLE_2.values())
    assert all(len(values) == 10 for values in paper.TABLE_4.values())


def test_main_report_links_the_attribution_page_only_when_given():
    tables_ = {}
    plain = page.render_page(run_data({"title": "Run"}, **tables_))
    linked = page.render_page(run_data({"title": "Run", "attribution": "attribution.html"}, **tables_))
    assert 'href="attribution.html"' in linked and "attribution.html" not in plain
