"""SaMIA and SaMIA*zlib for one shard of texts: sample continuations of each text's first half."""

import pandas as pd
import torch

from paramdelta import attacks, models, train
from paramdelta.atomic import write_parquet
from paramdelta.job import setup

log = setup(snakemake)
params = snakemake.params
torch.set_num_threads(snakemake.threads)
device = train.pick_device(params.device)

table = pd.read_parquet(snakemake.input.dataset).set_index("text_id").loc[list(params.texts)]
model, tokenizer = models.load_with_tokenizer(params.model["path"], revision=params.model["revision"])
model = model.to(device).eval()
samia = params.samia
scores = attacks.samia_scores(
    model,
    tokenizer,
    table["text"].tolist(),
    n_samples=samia["n_samples"],
    seed=samia["seed"],
    batch_size=samia["batch_size"],
    text_ids=table.index.tolist(),
    max_length=params.max_length,
)
write_parquet(scores, snakemake.output[0])
log.info("SaMIA: %d texts, %d samples each", len(table), samia["n_samples"])
