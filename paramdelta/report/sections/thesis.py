"""The thesis's published AUROCs beside this run's, for the models and data set they share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from paramdelta.features import METHOD
from paramdelta.report.format import (
    K_NOTE,
    MISSING,
    NO_BUDGET,
    auroc_with_interval,
    best_row,
    is_missing,
    k_label,
    mean,
    number,
)
from paramdelta.report.tables import Cell, Table

ID = "thesis"
HEADING = "Comparison with the thesis's published numbers"
CAPTION = (
    "The thesis's AUROCs on WikiMIA's 32-word split (its tables 5.1 and 5.2) beside this run's, for the "
    "models this run shares with it (matched on the configured Hugging Face id) and only on the same "
    "data set. A this-run cell reads AUROC [95% interval]; the thesis printed no intervals, so a "
    "difference smaller than this run's interval is no evidence that the two disagree."
)
PER_DATASET = True


@dataclass(frozen=True)
class ThesisRow:
    label: str
    method: str
    selection: str
    budget: str
    k: str | float | None  # None: no K; "best": best K on the evaluation set; a number: that K if run
    published: tuple[float, float, float, float]  # in THESIS_MODELS order
    mean: float


THESIS_DATASET = {"hf": "swj0419/WikiMIA", "split": "WikiMIA_length32"}
THESIS_MODELS = {
    "EleutherAI/gpt-j-6b": "GPT-J-6B",
    "facebook/opt-6.7b": "OPT-6.7B",
    "EleutherAI/pythia-6.9b": "Pythia-6.9B",
    "meta-llama/Llama-2-7b-hf": "Llama-2-7B",
}
# The thesis's published AUROCs on WikiMIA, 32-word split (seeds/000, section 5.2): row
# "20epoch" of table 5.1 and rows "top-K% 30epoch", "top-K% ES", "Min-K%" and "SaMIA*zlib"
# of table 5.2, as METHOD.md section 1 lists them; the mean is the one the thesis printed.
# Its top-K% keeps the parameters whose change is largest, with the best K from 1 to 50 on
# the evaluation set (here topk-elements); Min-K% Prob used its paper's best setting, K = 20%.
THESIS_RESULTS = (
    ThesisRow("all parameters, 20 epochs", METHOD, "all", "20", None, (0.66, 0.51, 0.64, 0.53), 0.585),
    ThesisRow("top-K%, 30 epochs", METHOD, "topk-elements", "30", "best", (0.69, 0.71, 0.61, 0.64), 0.660),
    ThesisRow("top-K%, early stopping", METHOD, "topk-elements", "es", "best", (0.63, 0.57, 0.76, 0.56), 0.634),
    ThesisRow("Min-K% Prob", "mink", "", NO_BUDGET, 20.0, (0.71, 0.67, 0.71, 0.58), 0.668),
    ThesisRow("SaMIA*zlib", "samia-zlib", "", NO_BUDGET, None, (0.75, 0.81, 0.75, 0.66), 0.743),
)


def _thesis_models(data) -> dict[str, str]:
    """Thesis column name -> this run's model slug, for the models the run shares with the thesis."""
    configured = data.config.get("models")
    if not isinstance(configured, dict):
        return {}
    by_id = {hub_id.lower(): name for hub_id, name in THESIS_MODELS.items()}
    found = {}
    for slug in data.models:
        spec = configured.get(slug)
        path = str(spec.get("path", "")).strip().rstrip("/").lower() if isinstance(spec, dict) else ""
        if path in by_id and by_id[path] not in found:
            found[by_id[path]] = slug
    return {name: found[name] for name in THESIS_MODELS.values() if name in found}


def _dataset_matches(data) -> bool:
    datasets = data.config.get("datasets")
    spec = datasets.get(data.dataset) if isinstance(datasets, dict) else None
    if not isinstance(spec, dict):
        return False
    return (
        str(spec.get("hf", "")).lower() == THESIS_DATASET["hf"].lower()
        and str(spec.get("split", "")) == THESIS_DATASET["split"]
    )


def _cell(data, thesis: ThesisRow, model: str) -> pd.Series | None:
    metrics = data.metrics
    rows = metrics[
        (metrics["model"] == model)
        & (metrics["method"] == thesis.method)
        & (metrics["selection"] == thesis.selection)
        & (metrics["budget"] == thesis.budget)
    ]
    if thesis.k is None:
        rows = rows[rows["k"].isna()]
    elif thesis.k != "best" and (rows["k"] == thesis.k).any():
        rows = rows[rows["k"] == thesis.k]
    return best_row(rows)


def context(data) -> dict:
    models = _thesis_models(data)
    shared = {"dataset": data.dataset, "thesis_dataset": THESIS_DATASET, "thesis_models": ", ".join(THESIS_MODELS)}
    if not _dataset_matches(data):
        return {**shared, "reason": "dataset"}
    if not models:
        return {**shared, "reason": "models"}
    names = list(THESIS_MODELS.values())
    all_four = len(models) == len(names)
    head = [
        [Cell("row", header=True, rowspan=2)]
        + [Cell(f"{name} ({slug})", header=True, colspan=2) for name, slug in models.items()]
        + ([Cell("mean", header=True, colspan=2)] if all_four else []),
        [Cell(text, header=True) for _ in range(len(models) + all_four) for text in ("thesis", "this run")],
    ]
    body, uses_k = [], False
    for thesis in THESIS_RESULTS:
        cells = [Cell(thesis.label, label=True)]
        run_aurocs = []
        for name, slug in models.items():
            row = _cell(data, thesis, slug)
            run_aurocs.append(math.nan if row is None else row["auroc"])
            text, note = (MISSING, "") if row is None else (auroc_with_interval(row), "")
            if row is not None and not is_missing(row["k"]):
                chosen = thesis.k == "best" or float(row["k"]) != float(thesis.k)
                text, note = f"{text} (K={k_label(row['k'])})", K_NOTE if chosen else ""
                uses_k = uses_k or chosen
            cells += [Cell(f"{thesis.published[names.index(name)]:.2f}"), Cell(text, note=note)]
        if all_four:
            cells += [Cell(f"{thesis.mean:.3f}"), Cell(number(mean(run_aurocs), ".3f"))]
        body.append(cells)
    notes = [
        "The thesis's top-K% keeps the parameters whose change is largest (here topk-elements) with the best "
        "K from 1 to 50 on the evaluation set, and its Min-K% Prob uses its paper's K = 20%; this run's cells "
        "do the same where it ran those K."
    ]
    if uses_k:
        notes.append(f"{K_NOTE} K chosen on the evaluation set, as in the thesis: optimistic.")
    missing = [name for name in names if name not in models]
    if missing:
        notes.append(f"Not in this run: {', '.join(missing)}; the mean column needs all four models.")
    return {**shared, "reason": None, "table": Table(head, body), "notes": notes}
