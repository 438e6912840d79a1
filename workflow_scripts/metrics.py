"""The metrics table of every (dataset, model, budget, method, selection, k), the member
vs non-member t-tests and the budget-AUROC correlations; before them, the param-delta score
combined with the best black-box attack (paramdelta.combination), whose per-text scores are
written beside the others."""

import pandas as pd

from paramdelta import combination, metrics
from paramdelta.atomic import write_csv, write_parquet
from paramdelta.job import setup

log = setup(snakemake)
scores = pd.concat([pd.read_parquet(p) for p in snakemake.input.scores], ignore_index=True)
texts = pd.concat([pd.read_parquet(p) for p in snakemake.input.texts], ignore_index=True)
change = pd.concat([pd.read_parquet(p) for p in snakemake.input.change], ignore_index=True)
# The param-delta score combined with the best black-box attack, out of fold.
combined = combination.combined_scores(scores, folds=snakemake.params.folds, seed=snakemake.params.seed)
write_parquet(combined, snakemake.output.combined)
scores = pd.concat([scores, combined], ignore_index=True)
table = metrics.metrics_table(scores, texts, n_boot=snakemake.params.bootstrap, seed=snakemake.params.seed)
write_csv(table, snakemake.output.metrics)
write_csv(metrics.ttest_table(scores, change), snakemake.output.ttest)
write_csv(metrics.correlation_table(table), snakemake.output.correlation)
write_csv(
    metrics.topk_cv_table(scores, n_boot=snakemake.params.bootstrap, seed=snakemake.params.seed),
    snakemake.output.topk_cv,
)
log.info("%d metric rows", len(table))
