"""Write the base snapshot of a model once: every parameter, in the configured dtype when
that holds the weights exactly, else in float32 (training starts from the fp32 weights, so a
rounded base would put rounding into every delta)."""

import torch

from paramdelta import models, store
from paramdelta.job import setup

log = setup(snakemake)
params = snakemake.params
model = models.load_causal_lm(params.path, dtype=torch.float32, revision=params.revision)
layers = models.model_layers(model)
named = {name: p.detach() for name, p in model.named_parameters()}
dtype = getattr(torch, params.dtype)
if dtype != torch.float32 and not all(torch.equal(t.to(dtype).float(), t) for t in named.values()):
    log.warning(
        "%s is not exactly representable in %s; the base snapshot is stored in float32", params.path, params.dtype
    )
    dtype = torch.float32
attrs = {
    "kind": "base",
    "model": snakemake.wildcards.model,
    "model_path": params.path,
    "revision": params.revision,
    "dtype": str(dtype).removeprefix("torch."),
    "architecture": type(model).__name__,
    "n_parameters": sum(t.numel() for t in named.values()),
    "layers": [layer.name for layer in layers],
}
store.write_snapshot(snakemake.output[0], {name: t.to(dtype) for name, t in named.items()}, attrs)
log.info(
    "base snapshot of %s: %d tensors, %d parameters, %s", params.path, len(named), attrs["n_parameters"], attrs["dtype"]
)
