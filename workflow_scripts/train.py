"""One training job: continual pre-training of one model on each text of a shard, from the
exact base weights every time, and one snapshot store holding what each text did."""

import pandas as pd
import torch
from _common import setup

from paramdelta import data, models, store, train

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

model, tokenizer = models.load_with_tokenizer(params.model["path"], revision=params.model["revision"])
layers = models.model_layers(model)
max_length = params.train.get("max_length") or models.context_length(model)
device = train.pick_device(params.train["device"])
if params.engine == "deepspeed":
    ds_config = train.deepspeed_config(snakemake.input.deepspeed, settings, params.model.get("zero_stage"))
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
        run = train.run_text(engine, tokenizer, text_id, text, budget, settings, max_length)
        train.write_text_record(root, run, data.text_sha256(text), policy=policy, layers=layers, base=engine.base,
                                ks=ks, snapshot_dtype=snapshot_dtype)
        if run.ok:
            log.info("text %s: %d epochs (best %d), loss %.4f, %.2f s", text_id, run.epochs_run, run.best_epoch,
                     run.losses[run.best_epoch - 1], run.seconds)
        else:
            log.warning("text %s failed at epoch %s: %s", text_id, run.failed_epoch, run.failure)
