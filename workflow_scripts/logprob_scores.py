"""Log-probability baselines of one model on one data set, from one forward pass per text, and
the gradient norm from one backward pass per text."""

import pandas as pd
import torch

from paramdelta import attacks, models, train
from paramdelta.atomic import write_parquet
from paramdelta.attacks.gradnorm import NAME as GRADNORM
from paramdelta.attacks.gradnorm import gradnorm_scores
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
texts, text_ids = table["text"].tolist(), table["text_id"].tolist()
forward = [name for name in params.attacks if name != GRADNORM]
parts = []
if forward:
    parts.append(
        attacks.score_texts(
            model,
            tokenizer,
            texts,
            forward,
            ks=params.ks,
            batch_size=params.batch_size,
            reference=reference,
            text_ids=text_ids,
            max_length=params.max_length,
        )
    )
if GRADNORM in params.attacks:
    parts.append(gradnorm_scores(model, tokenizer, texts, text_ids, max_length=params.max_length))
scores = pd.concat(parts, ignore_index=True)
write_parquet(scores, snakemake.output[0])
log.info("%d scores of %d texts: %s", len(scores), len(table), ", ".join(params.attacks))
