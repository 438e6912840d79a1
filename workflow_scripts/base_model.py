"""Make the base model of a built target: pre-train a fresh architecture on the background
documents, or take an existing model as it is."""

import pandas as pd
import torch

from paramdelta import models, target
from paramdelta.job import setup

log = setup(snakemake)
build = snakemake.params.build
torch.set_num_threads(snakemake.threads)

if "base" in build:
    model, tokenizer = models.load_with_tokenizer(build["base"])
else:
    documents = pd.read_json(snakemake.input.background, lines=True)["text"].tolist()
    tokenizer = target.train_tokenizer(documents, build["vocab_size"])
    config = models.build_config(build, tokenizer)
    model = models.build_model(config, build["seed"])
    losses = target.pretrain(
        model,
        tokenizer,
        documents,
        epochs=build["base_epochs"],
        lr=build["base_lr"],
        batch_size=build["batch_size"],
        seed=build["seed"],
        max_length=build["max_positions"],
    )
    log.info("base pre-training on %d documents, loss per epoch: %s", len(documents), losses)
target.save(model, tokenizer, snakemake.output[0])
