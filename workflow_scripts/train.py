"""One training job: continual pre-training of one model on each text of a shard, from the
exact base weights every time, and one snapshot store holding what each text did."""

import numpy as np
import pandas as pd
import torch
from _common import setup
from transformers import AutoTokenizer

from paramdelta import data, deltas, models, store, train

log = setup(snakemake)
params = snakemake.params
budget = snakemake.wildcards.budget
settings = train.Settings.from_config(params.train)
torch.set_num_threads(snakemake.threads)
torch.use_deterministic_algorithms(True, warn_only=True)

table = pd.read_parquet(snakemake.input.dataset).set_index("text_id")
missing = [t for t in params.texts if t not in table.index]
if missing:
    raise ValueError(f"{snakemake.input.dataset}: text ids {missing} of this job are not in the data set table")

tokenizer = AutoTokenizer.from_pretrained(params.model["path"], revision=params.model["revision"])
model = models.load_causal_lm(params.model["path"], revision=params.model["revision"])
layers = models.model_layers(model)
max_length = params.train.get("max_length") or models.context_length(model)
device = train.pick_device(params.train["device"])
if params.engine == "deepspeed":
    ds_config = train.deepspeed_config(params.train["deepspeed_config"], settings, params.model.get("zero_stage"))
    engine = train.DeepSpeedEngine(model, settings, device, ds_config)
else:
    engine = train.TorchEngine(model, settings, device)
policy, ks = params.snapshots["store"], params.ks
snapshot_dtype = getattr(torch, params.snapshots["dtype"])

attrs = {
    "kind": "train",
    "policy": policy,
    "model": snakemake.wildcards.model,
    "model_path": params.model["path"],
    "revision": params.model["revision"],
    "dataset": snakemake.wildcards.dataset,
    "budget": budget,
    "engine": params.engine,
    "seed": settings.seed,
    "train": params.train,
    "ks": list(ks),
    "layers": [{"name": l.name, "group": l.group, "block": l.block, "numel": l.numel, "params": list(l.params)} for l in layers],
    "texts": list(params.texts),
    "device": str(engine.device),
}
with store.atomic_group(snakemake.output[0], attrs) as root:
    for text_id in params.texts:
        text = table.at[text_id, "text"]
        token_ids = tokenizer(text)["input_ids"]
        group = root.require_group(f"texts/{text_id}")
        if len(token_ids) < 2:
            run = train.TextRun(text_id=text_id, n_tokens=len(token_ids), n_chunks=0, budget=budget,
                                failure="fewer than 2 tokens: nothing to predict")
        else:
            run = train.train_text(engine, text_id, train.chunk(token_ids, max_length), budget, settings)
        group.update_attributes({**run.attrs(), "text_sha256": data.text_sha256(text)})
        store.write_arrays(group, {"loss": np.asarray(run.losses), "lr": np.asarray(run.lrs)})
        if not run.ok:
            log.warning("text %s failed at epoch %s: %s", text_id, run.failed_epoch, run.failure)
            continue
        if policy == "sketch":
            store.write_arrays(group, deltas.layer_stats(layers, engine.base, run.after, ks))
        elif policy == "delta":
            store.write_tensors(group.require_group("params"),
                                {n: (run.after[n] - engine.base[n]).to(snapshot_dtype) for n in run.after})
        else:
            store.write_tensors(group.require_group("params"), {n: t.to(snapshot_dtype) for n, t in run.after.items()})
        log.info("text %s: %d epochs (best %d), loss %.4f, %.2f s", text_id, run.epochs_run, run.best_epoch,
                 run.losses[run.best_epoch - 1], run.seconds)
