"""Log-probability baselines of one model on one data set, from one forward pass per text."""

import pandas as pd
import torch

from paramdelta import attacks, models, train
from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
params = snakemake.params
torch.set_num_threads(snakemake.threads)
device = train.pick_device(params.device)


def load(path, revision=None):
    model, tokenizer = models.load_with_tokenizer(path, revision=revision)
    return model.to(device).eval(), tokenizer


table = pd.read_parquet(snakemake.input.dataset)
model, tokenizer = load(params.model["path"], params.model["revision"])
reference = load(params.reference) if "ref" in params.attacks else None
scores = attacks.score_texts(
    model,
    tokenizer,
    table["text"].tolist(),
    params.attacks,
    ks=params.ks,
    batch_size=params.batch_size,
    reference=reference,
    text_ids=table["text_id"].tolist(),
    max_length=params.max_length,
)
write_parquet(scores, snakemake.output[0])
log.info("%d scores of %d texts: %s", len(scores), len(table), ", ".join(params.attacks))
