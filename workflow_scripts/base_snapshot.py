"""Write the base snapshot of a model once: every parameter in the checkpoint's dtype."""

import torch
from _common import setup

from paramdelta import models, store

log = setup(snakemake)
params = snakemake.params
model = models.load_causal_lm(params.path, dtype=getattr(torch, params.dtype), revision=params.revision)
layers = models.model_layers(model)
named = dict(model.named_parameters())
attrs = {
    "kind": "base",
    "model": snakemake.wildcards.model,
    "model_path": params.path,
    "revision": params.revision,
    "dtype": params.dtype,
    "architecture": type(model).__name__,
    "n_parameters": sum(p.numel() for p in named.values()),
    "layers": [layer.name for layer in layers],
}
store.write_snapshot(snakemake.output[0], {name: p.detach() for name, p in named.items()}, attrs)
log.info("base snapshot of %s: %d tensors, %d parameters", params.path, len(named), attrs["n_parameters"])
