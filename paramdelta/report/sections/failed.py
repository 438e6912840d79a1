"""Failed texts, the texts whose fp16 loss scaler skipped steps, and early-stopping runs whose
replay of the best epoch did not end where the first pass had (training not reproducible)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from paramdelta.report.format import budget_heading, in_run_order, integer
from paramdelta.report.tables import plain_table

ID = "failed"
HEADING = "Failed texts"
CAPTION = (
    "Training runs that did not finish, with the failure and the epoch in which it happened. These texts "
    "have no score for that model and budget and are missing from the tables above. Long lists are "
    "cut, with a count per failure first. With fp16, the texts whose loss scaler skipped steps follow, and "
    "where early stopping replayed its best epoch, the runs whose replay ended with another loss or other weights."
)
PER_DATASET = True
FAILED_ROWS = 100


def context(data) -> dict:
    return {"limit": FAILED_ROWS, **_failures(data), **_skipped_steps(data), **_inexact_replays(data)}


def _failures(data) -> dict:
    failed = data.texts[data.texts["status"] == "failed"]
    if failed.empty:
        return {"n_failed": 0}
    failed = in_run_order(data, failed, "text_id")
    counts = None
    if len(failed) > FAILED_ROWS:
        groups = failed.assign(failure=failed["failure"].fillna("").astype(str)).groupby(
            ["model", "budget", "failure"], sort=False
        )
        counts = plain_table(
            ["model", "budget", "failure", "texts"],
            [[model, budget_heading(budget), failure, len(group)] for (model, budget, failure), group in groups],
            label_columns=3,
        )
    rows = [
        [row["model"], budget_heading(row["budget"]), row["text_id"], row["failure"], integer(row["failed_epoch"])]
        for _, row in failed.head(FAILED_ROWS).iterrows()
    ]
    columns = ["model", "budget", "text_id", "failure", "failed epoch"]
    return {"n_failed": len(failed), "counts": counts, "failed": plain_table(columns, rows, label_columns=4)}


def _skipped_steps(data) -> dict:
    """Texts whose fp16 loss scaler skipped steps (an overflow: that step did not train)."""
    if "skipped_steps" not in data.texts:
        return {"n_skipped": 0}
    skipped = data.texts[pd.to_numeric(data.texts["skipped_steps"], errors="coerce").fillna(0) > 0]
    if skipped.empty:
        return {"n_skipped": 0}
    skipped = in_run_order(data, skipped, "text_id")
    rows = []
    for _, row in skipped.head(FAILED_ROWS).iterrows():
        steps = row.get("epochs_run", np.nan) * row.get("n_chunks", np.nan)
        share = f"{row['skipped_steps'] / steps:.0%}" if steps and np.isfinite(steps) else ""
        rows.append(
            [
                row["model"],
                budget_heading(row["budget"]),
                row["text_id"],
                integer(row["skipped_steps"]),
                integer(steps),
                share,
            ]
        )
    columns = ["model", "budget", "text_id", "skipped steps", "steps", "share"]
    return {"n_skipped": len(skipped), "skipped": plain_table(columns, rows, label_columns=3)}


def _inexact_replays(data) -> dict:
    """Early-stopping runs that trained again to their best epoch (train.best_state) and ended with
    another loss or other weights than the first pass had there: their state is the replay's, not the one
    early stopping chose, because training was not reproducible bit for bit on their device."""
    if "replay_exact" not in data.texts:
        return {"n_inexact": 0}
    exact = pd.array(data.texts["replay_exact"], dtype="boolean")  # None where nothing was replayed
    inexact = data.texts[~exact.fillna(True).to_numpy(dtype=bool)]
    if inexact.empty:
        return {"n_inexact": 0}
    groups = in_run_order(data, inexact, "text_id").groupby(["model", "budget"], sort=False)
    rows = [[model, budget_heading(budget), len(group)] for (model, budget), group in groups]
    return {"n_inexact": len(inexact), "inexact": plain_table(["model", "budget", "texts"], rows, label_columns=2)}
