"""Per-text membership scores of the parameter-change method for one (dataset, model, training
setting, budget), with each layer's AUROC alone, each text's total change and the members' and
non-members' mean per-epoch change of each layer (for the report)."""

import pandas as pd

from paramdelta import config, features, supervised
from paramdelta.atomic import write_parquet
from paramdelta.attacks.loss_change import NAME as LOSS_CHANGE
from paramdelta.attacks.loss_change import loss_change_scores
from paramdelta.job import setup

log = setup(snakemake)
table = pd.read_parquet(snakemake.input.table)
if table.empty:
    raise ValueError(f"{snakemake.input.table}: no text trained successfully; see {snakemake.input.texts}")
w = snakemake.wildcards
method = config.method_name(w.optimizer)
keys = {"dataset": w.dataset, "model": w.model, "budget": w.budget}
table = features.normalise(table)
params = snakemake.params
trajectory = pd.read_parquet(snakemake.input.trajectory)
ours = pd.concat(
    [
        features.score_table(table, params.selections, params.ks, params.aggregate, method=method),
        features.distance_scores(table, params.distances, method=method),
        features.trajectory_scores(trajectory, params.trajectory, method=method),
    ],
    ignore_index=True,
)
classes = table.drop_duplicates("text_id")["label"].value_counts()
if min(classes.get(0, 0), classes.get(1, 0)) >= params.folds:
    learned = supervised.supervised_table(
        table, params.supervised, optimizer=w.optimizer, folds=params.folds, seed=params.seed
    )
else:
    learned = ours.iloc[0:0]
    if params.supervised:
        log.warning(
            "no supervised scores: %d members and %d non-members trained, %d of each needed (features.folds)",
            classes.get(1, 0),
            classes.get(0, 0),
            params.folds,
        )
# The training records give the one-step loss change of every text (paramdelta.attacks.loss_change).
setting = method[len(features.METHOD) :]  # "" or ":<name>"
step = loss_change_scores(pd.read_parquet(snakemake.input.texts), method=f"{LOSS_CHANGE}{setting}")
# A constant-schedule setting's smaller budgets, from the states this run passed through.
epochs = features.epoch_scores(trajectory, params.epoch_budgets, method=method)
if params.epoch_budgets:
    log.info("budgets %s read from this run's trajectory", ", ".join(params.epoch_budgets))
outputs = {
    "scores": pd.concat([ours, learned, step, epochs], ignore_index=True),
    "layers": features.layer_aurocs(table),
    "change": features.text_change(table),
    "curve": features.trajectory_curve(trajectory),
}
for name, frame in outputs.items():
    for column, value in reversed(keys.items()):
        if column in frame.columns:  # the budgets read from the trajectory carry their own
            frame.insert(0, column, frame.pop(column).astype(object).fillna(value))
        else:
            frame.insert(0, column, value)
    if "method" not in frame.columns:
        frame.insert(len(keys), "method", method)
    write_parquet(frame, snakemake.output[name])
log.info("%d scores of %d texts", len(outputs["scores"]), outputs["change"].shape[0])
