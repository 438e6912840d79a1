"""Run summary: what was run on each data set, and the jobs' compute."""

from __future__ import annotations

import pandas as pd

from paramdelta.config import is_supervised
from paramdelta.features import METHOD, is_param_delta
from paramdelta.report.format import MISSING, baseline_methods, budget_heading, duration, integer, number
from paramdelta.report.tables import plain_table

ID = "summary"
HEADING = "Run summary"
CAPTION = (
    "What was run: for each data set the number of member and non-member texts, the models that were "
    "continually pre-trained on every text, the epoch budgets, the attacks evaluated, and how many of "
    "the training runs (one per text, model and budget) finished or failed. A failed run leaves its text "
    "without a score for that model and budget, so the results below rest on the runs that finished. "
    "Below, the workflow's jobs and their compute from the per-job benchmark records: wall time, peak "
    "memory and GPU hours (wall time times GPUs requested), per rule, largest first."
)
PER_DATASET = False
COLUMNS = ["data set", "members", "non-members", "models", "budgets", "methods", "training runs", "ok", "failed"]
COMPUTE_COLUMNS = [
    "rule", "jobs", "wall time, total", "per job, mean", "per job, max", "peak memory (MB)", "CPU time", "GPU hours",
]  # fmt: skip


def context(data) -> dict:
    facts, compute = _compute(data)
    return {
        "datasets": plain_table(COLUMNS, _dataset_rows(data), label_columns=(0, 3, 4, 5)),
        "facts": "; ".join(facts),
        "compute": compute,
    }


def _dataset_rows(data) -> list[list]:
    rows = []
    for subset in data.per_dataset():
        texts = subset.texts
        labels = texts.drop_duplicates("text_id")["label"]
        found = subset.metrics["method"].astype(str).unique()
        methods = [METHOD] if METHOD in found else []
        methods += sorted(method for method in found if is_param_delta(method) and method != METHOD)
        methods += sorted(method for method in found if is_supervised(method))
        spec = (data.config.get("datasets") or {}).get(subset.dataset) or {}
        # A benchmark of member and non-member files says which domain and overlap split it is.
        named = ", ".join(f"{key} {spec[key]}" for key in ("domain", "overlap") if spec.get(key))
        rows.append(
            [
                f"{subset.dataset} ({named})" if named else subset.dataset,
                int((labels == 1).sum()),
                int((labels == 0).sum()),
                ", ".join(subset.models),
                ", ".join(budget_heading(budget) for budget in subset.budgets),
                ", ".join(methods + baseline_methods(subset.metrics)),
                len(texts),
                int((texts["status"] == "ok").sum()),
                int((texts["status"] == "failed").sum()),
            ]
        )
    return rows


def _compute(data):
    """The facts about the run's jobs, and the compute per rule (None without benchmark records)."""
    jobs = data.meta.get("jobs") or {}
    bench = data.benchmarks
    n_jobs = jobs.get("n_jobs")
    facts = [f"Jobs run: {integer(n_jobs) if n_jobs is not None else len(bench)}"]
    if n_jobs is None:
        facts[0] += " (counted from the benchmark records of finished jobs)"
    facts.append(f"jobs failed: {integer(jobs['n_failed']) if jobs.get('n_failed') is not None else 'not known'}")
    if bench.empty:
        return facts, None
    seconds = pd.to_numeric(bench["s"], errors="coerce")
    gpus = pd.to_numeric(bench["gpus"], errors="coerce").fillna(0)
    cpu = pd.to_numeric(bench["cpu_time"], errors="coerce")
    rss = pd.to_numeric(bench["max_rss"], errors="coerce")
    gpu_hours = seconds * gpus / 3600
    facts += [
        f"wall time of all jobs together: {duration(seconds.sum())}",
        f"GPU hours: {gpu_hours.sum():.2f}",
        f"CPU time: {duration(cpu.sum()) if cpu.notna().any() else MISSING}",
    ]
    frame = pd.DataFrame({"rule": bench["rule"], "s": seconds, "gpu_h": gpu_hours, "cpu": cpu, "rss": rss})
    rows = [
        [
            rule,
            len(group),
            duration(group["s"].sum()),
            duration(group["s"].mean()),
            duration(group["s"].max()),
            number(group["rss"].max(), ".0f"),
            duration(group["cpu"].sum()) if group["cpu"].notna().any() else MISSING,
            f"{group['gpu_h'].sum():.2f}",
        ]
        for rule, group in frame.groupby("rule", sort=False)
    ]
    rows.sort(key=lambda row: -frame[frame["rule"] == row[0]]["s"].sum())
    return facts, plain_table(COMPUTE_COLUMNS, rows)
