"""What works: every method of the run, best first, beside what it cost per text."""

from __future__ import annotations

import pandas as pd

from paramdelta.attacks.loss_change import NAME as LOSS_CHANGE
from paramdelta.config import (
    DEFAULT_OPTIMIZER,
    LABELLED_ATTACKS,
    LOGPROB_ATTACKS,
    SAMPLING_ATTACKS,
    is_param_delta,
    is_supervised,
)
from paramdelta.report.format import (
    BLIND,
    MISSING,
    NO_BUDGET,
    auroc_with_interval,
    budget_heading,
    is_missing,
    k_label,
    number,
    ranked,
)
from paramdelta.report.tables import plain_table

ID = "what-works"
HEADING = "What works: every method, best first, with its cost"
CAPTION = (
    "Every method of the run on each model, sorted by AUROC, with its 95% interval and what it cost per "
    "text from the jobs' benchmark records: device-seconds (the jobs' wall time, times their GPUs where "
    "they had any) divided by the texts scored. A method's row is its best variant (budget, training "
    "setting, layer selection, K), picked on these very texts, which favours the methods with many "
    "variants; the supervised and combined scores are out of fold but need labelled texts. Costs: "
    "param-delta, the one-step loss change and what is learned from them, the per-text training of its "
    "setting and budget; the "
    "log-probability attacks share one job (one forward pass per text, and for PAC five more over "
    "word-swapped copies, for ReCaLL two unbatched ones, for FSD the fine-tuning of a copy and a pass "
    "under it, for gradnorm a backward pass), whose cost each of them is given; SaMIA, its sampling jobs; "
    "the blind baseline runs no model. ReCaLL's prefix and FSD's fine-tuning texts are labelled "
    "non-members of the data set, which they do not score; DC-PDD calibrates by the token "
    "frequencies of baselines.dcpdd.corpus, or of the data set's own texts (labels unread) where none "
    "is named. The blind baseline's row says how much of any AUROC the data set's member/non-member "
    "shift alone explains."
)
PER_DATASET = True
COLUMNS = ["", "model", "method", "best variant", "AUROC [95% interval]", "device-s per text", "learns from labels"]


def _texts(data, model: str) -> int | None:
    rows = data.metrics[data.metrics["model"] == model]
    if rows.empty:
        return None
    first = rows.iloc[0]
    return int(first["n_members"] + first["n_nonmembers"]) if "n_members" in rows.columns else None


def _job_seconds(data, rule: str, *parts: str) -> float | None:
    """Device-seconds of the rule's jobs whose wildcards start with `parts` (None: no record)."""
    bench = data.benchmarks
    if bench.empty:
        return None
    prefix = "/".join(parts) + "/"
    rows = bench[(bench["rule"] == rule) & (bench["job"] + "/").str.startswith(prefix)]
    if rows.empty:
        return None
    seconds = pd.to_numeric(rows["s"], errors="coerce")
    gpus = pd.to_numeric(rows["gpus"], errors="coerce").fillna(0).clip(lower=1)
    return float((seconds * gpus).sum())


def _cost(data, row: pd.Series) -> float | None:
    """Device-seconds per text of one metrics row (None: no benchmark record for it)."""
    dataset, model, method = str(row["dataset"]), str(row["model"]), str(row["method"])
    texts = _texts(data, model)
    if not texts:
        return None
    base, _, setting = method.partition(":")
    if is_param_delta(method) or is_supervised(method) or base == LOSS_CHANGE:
        # What the per-text training of the setting and budget cost (the loss change reads it).
        setting = setting or DEFAULT_OPTIMIZER
        budget = str(row["budget"])
        seconds = _job_seconds(data, "train", dataset, model, setting, budget)
        if seconds is None and budget.isdigit():
            # A budget read from the trajectory of a longer run of the setting costs that run.
            longer = (b for b in data.budgets if b.isdigit() and int(b) > int(budget))
            seconds = next((s for b in longer if (s := _job_seconds(data, "train", dataset, model, setting, b))), None)
        if seconds is not None and method.startswith("combined-"):
            black_box = [_job_seconds(data, rule, dataset, model) for rule in ("logprob_scores", "samia")]
            seconds += sum(s for s in black_box if s is not None)
    elif base in LOGPROB_ATTACKS:
        seconds = _job_seconds(data, "logprob_scores", dataset, model)
    elif base in SAMPLING_ATTACKS:
        seconds = _job_seconds(data, "samia", dataset, model)
    elif base == BLIND:
        return 0.0
    else:
        seconds = None
    return None if seconds is None else seconds / texts


def _learns_from_labels(method: str) -> str:
    if is_supervised(method) or method == BLIND:
        return "yes"
    return "labelled non-members (not scored)" if method in LABELLED_ATTACKS else "no"


def _variant(row: pd.Series) -> str:
    parts = []
    if row["budget"] != NO_BUDGET:
        parts.append(budget_heading(row["budget"]))
    if row["selection"]:
        parts.append(str(row["selection"]))
    if not is_missing(row["k"]):
        parts.append(f"K={k_label(row['k'])}")
    return ", ".join(parts) or MISSING


def context(data) -> dict:
    metrics = data.metrics[data.metrics["auroc"].notna()]
    if metrics.empty:
        return {"table": None}
    best = [ranked(group).iloc[0] for _, group in metrics.groupby(["model", "method"], sort=False)]
    # The blind baseline looks at no model: one row, not one per model.
    best = [row for i, row in enumerate(best) if row["method"] != BLIND or BLIND not in [r["method"] for r in best[:i]]]
    order = sorted(best, key=lambda row: -float(row["auroc"]))
    rows = []
    for rank, row in enumerate(order, start=1):
        cost = _cost(data, row)
        rows.append(
            [
                str(rank),
                row["model"] if row["method"] != BLIND else "(no model)",
                row["method"],
                _variant(row),
                auroc_with_interval(row),
                number(cost, ".3g") if cost is not None else MISSING,
                _learns_from_labels(row["method"]),
            ]
        )
    return {"table": plain_table(COLUMNS, rows, label_columns=(1, 2, 3))}
