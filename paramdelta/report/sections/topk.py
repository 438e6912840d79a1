"""Best top-K%: the K chosen on the evaluation texts against a cross-validated K."""

from __future__ import annotations

from paramdelta.features import K_SELECTIONS, METHOD
from paramdelta.report.format import K_NOTE, MISSING, auroc, budget_heading, in_run_order, interval, is_missing, number
from paramdelta.report.tables import plain_table

ID = "topk"
HEADING = "Best top-K%: chosen on the evaluation set vs cross-validated"
CAPTION = (
    "The thesis reports the top-K% selections at the K that scores best on the evaluation texts "
    "themselves, which no attacker without the labels could choose, so that AUROC is optimistic. Beside "
    "it, K chosen by 5-fold cross-validation: each fold's K is the best on the other four folds and "
    "scores the held-out texts; the table gives each fold's K and the mean of the five held-out "
    "AUROCs (each fold's own, since scores made with different K are not on one scale), with a "
    "bootstrap interval that repeats the whole selection in every replicate. That is the number to quote."
)
PER_DATASET = True
COLUMNS = [
    "model", "budget", "selection", f"K on evaluation set{K_NOTE}", f"AUROC at that K{K_NOTE}",
    "K per CV fold", "cross-validated AUROC [95% interval]", "optimism",
]  # fmt: skip


def context(data) -> dict:
    table = data.topk_cv
    if "method" in table.columns:  # the other training settings are in the section "optimizer"
        table = table[table["method"] == METHOD]
    if table.empty:
        return {"table": None}
    order = {selection: index for index, selection in enumerate(K_SELECTIONS)}
    table = in_run_order(data, table.assign(_order=table["selection"].map(order).fillna(len(order))), "_order")
    rows = [
        [
            row["model"],
            budget_heading(row["budget"]),
            row["selection"],
            number(row["k_eval"], "g"),
            auroc(row["auroc_eval"]),
            str(row["k_folds"]),
            interval(row["auroc_cv"], row["auroc_cv_lo"], row["auroc_cv_hi"]),
            number(float(row["auroc_eval"]) - float(row["auroc_cv"]), "+.2f")
            if not (is_missing(row["auroc_eval"]) or is_missing(row["auroc_cv"]))
            else MISSING,
        ]
        for _, row in table.iterrows()
    ]
    return {"table": plain_table(COLUMNS, rows, label_columns=3), "k_note": K_NOTE}
