"""Log-probability baselines of one model on one data set: the per-token attacks from one
forward pass per text, PAC's passes over word-swapped copies, ReCaLL's conditioned passes,
FSD's fine-tuned copy, and the gradient norm from one backward pass per text."""

import pandas as pd
import torch

from paramdelta import attacks, data, models, train
from paramdelta.atomic import write_parquet
from paramdelta.attacks import dc_pdd, fsd, gradnorm, pac, recall
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
own_passes = (gradnorm.NAME, pac.NAME, recall.NAME, fsd.NAME)
forward = [name for name in params.attacks if name not in own_passes]
frequencies = None
if dc_pdd.NAME in forward:
    corpus = snakemake.input.get("corpus")
    frequencies = dc_pdd.token_frequencies(tokenizer, data.read_texts(corpus) if corpus else texts)
    log.info("DC-PDD frequencies from %s", corpus or "the data set's own texts")
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
            frequencies=frequencies,
            text_ids=text_ids,
            max_length=params.max_length,
        )
    )
if pac.NAME in params.attacks:
    parts.append(
        pac.pac_scores(
            model,
            tokenizer,
            texts,
            text_ids,
            augmentations=params.pac["augmentations"],
            swap_ratio=params.pac["swap_ratio"],
            seed=params.pac["seed"],
            batch_size=params.batch_size,
            max_length=params.max_length,
        )
    )
if recall.NAME in params.attacks:
    parts.append(
        recall.recall_scores(
            model,
            tokenizer,
            texts,
            text_ids,
            table["label"].tolist(),
            shots=params.recall["shots"],
            seed=params.recall["seed"],
            max_length=params.max_length,
        )
    )
if fsd.NAME in params.attacks:
    parts.append(
        fsd.fsd_scores(
            model,
            tokenizer,
            texts,
            text_ids,
            table["label"].tolist(),
            n_texts=params.fsd["texts"],
            epochs=params.fsd["epochs"],
            lr=params.fsd["lr"],
            seed=params.fsd["seed"],
            batch_size=params.batch_size,
            max_length=params.max_length,
        )
    )
if gradnorm.NAME in params.attacks:
    parts.append(gradnorm.gradnorm_scores(model, tokenizer, texts, text_ids, max_length=params.max_length))
scores = pd.concat(parts, ignore_index=True)
write_parquet(scores, snakemake.output[0])
log.info("%d scores of %d texts: %s", len(scores), len(table), ", ".join(params.attacks))
