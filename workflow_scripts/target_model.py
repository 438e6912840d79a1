"""Continually pre-train the base on the data set's members: the target with known members."""

import pandas as pd
import torch

from paramdelta import models, target
from paramdelta.job import setup

log = setup(snakemake)
build = snakemake.params.build
torch.set_num_threads(snakemake.threads)

table = pd.read_parquet(snakemake.input.dataset)
members = table.loc[table.label == 1, "text"].tolist()
model, tokenizer = models.load_with_tokenizer(snakemake.input.base)
losses = target.pretrain(
    model,
    tokenizer,
    members,
    epochs=build["target_epochs"],
    lr=build["target_lr"],
    batch_size=build["batch_size"],
    seed=build["seed"] + 1,
    max_length=models.context_length(model),
)
log.info("continual pre-training on %d members, loss per epoch: %s", len(members), losses)
target.save(model, tokenizer, snakemake.output[0])
