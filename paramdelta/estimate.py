"""What a configuration will cost before it is submitted: GPU-hours and disk of its training.

    python -m paramdelta.estimate --configfile config/wikimia.yaml [--gpu h100 --gpu h200]
    make estimate CONFIG=config/wikimia.yaml [ARGS="--gpu h200"]

For every (model, data set) the configuration trains, it prints the number of texts, their tokens
and chunks, the optimizer steps per (text, budget), the model's parameter count, the time of a
step on each device asked for, the GPU-hours, and the disk of the training stores and the base
snapshot; then the totals and the assumptions. Everything is read offline (no download):

- texts: the data set's table (a local file, a fetched hub split under data/hub/, or the
  controlled split, generated as the workflow generates it); a data set that is not there
  makes the number unknown: say it with --texts (and --words-per-text or --tokens-per-text).
- tokens: each text tokenised as the training job tokenises it, with the model's tokenizer when
  it is on this machine (a local directory, a fetched hub model, a built target, or for a
  controlled model not built yet a tokenizer trained as the workflow's base_model rule trains
  it); else about COST_MODEL["tokens_per_word"] tokens a word.
- parameters, layers, context: from the model's config.json (local, fetched, or a built target),
  a controlled model's `build:` section, or the built-in KNOWN_MODELS table; the model is made on
  torch's meta device, so nothing is allocated. --params gives a count for any other model.

The time is a roofline: every optimizer step moves the training state through memory (see
`traffic` for the count of bytes per parameter) and does 6 x parameters x tokens FLOPs; around
the steps of every (text, budget) come the base restore and what the store keeps (sketch: the
statistics, computed where the parameters are, again at every new best epoch under early
stopping; delta/full: the states taken to host memory and the store write), under early stopping
a forward pass over the text after every epoch (the loss it compares), and every job starts by
loading the model. The factors are in COST_MODEL, the one table to update when benchmarks
measure them. Only training is counted: the baselines (one forward pass per text, SaMIA's
samples), the reductions and the report are small beside it, and so are the demo's built models.
The disk follows the job store of train.JobRecords (one store per job, each text a record and a
row of the job's arrays; delta/full a group of tensors per text).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The cost model. PLACEHOLDERS: no GPU has run this project yet. The GPU entries are data-sheet
# peaks with guessed efficiency factors and overheads, to be replaced by what issue 8's GPU
# benchmarks measure (the step time of a 7B model at batch 1 under the torch and DeepSpeed engines,
# the base restore, the statistics on the GPU, the start of a job). The `cpu-2core` entry and the
# host rate were measured with `python benchmarks/calibrate_estimate.py` (CPU time, best of 5; the
# ranges are two runs) on this project's development machine, machine B of docs/performance.md:
# a 2-core guest, "Intel(R) Xeon(R) Processor" (family 6 model 167, AVX-512), 24 GB, torch
# 2.13.0+cpu, 1 torch thread, 2026-12-07, at 69eb500:
#   clip + AdamW step (fused, as train._make_optimizer makes it) of a 29.4M-parameter GPT-NeoX:
#   57-58 ms, at 40 B/param -> 20.3-20.6 GB/s
#   forward + backward of 256 tokens on it: 383-386 ms -> 117-118 GFLOP/s (fp32)
#   a whole TorchEngine.step of the demo's 231k-parameter model on 60 tokens: 4.3-4.6 ms, of
#   which the floors above predict 1.3 ms -> 3.1-3.3 ms fixed (Python and per-operator overhead)
#   fp32 copy 7.0 GB/s; deltas.layer_stats with K up to 50%: 250-255 M elements/s (numpy's
#   partition; it was 10 M/s with torch.topk); store.write_tensors of an fp32 delta (zstd level
#   3): 102-104 MB/s; job start (imports, load): 4.0-4.2 s.
#   early stopping's evaluation of a 60-token chunk of the demo's model (a forward pass without
#   gradients, TorchEngine.evaluate): 1.97 ms fixed in a run whose step measured 4.53 ms fixed
#   (the machine busier than above), 0.43 of a step's.
# Machine A, the 2.50 GHz Xeon the figures of 2026-11-22 came from, measured 15.5 GB/s, 74-78
# GFLOP/s, 10-13 ms a step fixed, 5.4 GB/s copies, 49-57 MB/s store writes and a 12 s job start.
# The demo checks the CPU entry: on machine B its 16 training jobs took 351 s at e2e3784 (the sum
# of their `benchmark:` files' wall seconds, one torch thread each; 411 s before the statistics'
# integer partitions); the estimate of config/demo.yaml with this entry is 378 s (0.105
# core-hours, early stopping's evaluation passes included; 356 s without them).
COST_MODEL = {
    "devices": {
        "h100": {
            "description": "NVIDIA H100 SXM 80 GB (data-sheet peaks; factors are placeholders)",
            "unit": "GPU",
            "memory_bandwidth": 3.35e12,  # HBM3, bytes/s
            "flops": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},  # dense peak FLOP/s (fp32: no TF32)
            "memory": 84e9,  # bytes a program can use (about 78 GiB of the 80 GiB; placeholder until a GPU
            # run reports it): where the engines keep the base (run_overhead), what fits (gpu_bytes)
            "link_bandwidth": 450e9,  # NVLink 4, bytes/s each way between the GPUs of one job
            "host_bandwidth": 50e9,  # host <-> GPU copies from page-locked memory (train._host_copy), bytes/s:
            # PCIe 5 x16 carries 64 GB/s a direction (placeholder)
            # ZeRO-Offload's AdamW on a job's host cores (8 in config/wikimia.yaml), bytes/s: machine B
            # measured 40 GB/s on its 2 cores (bench_fast_path.py); a GPU node's 8 cores (placeholder)
            "host_optimizer_bandwidth": 80e9,
            "copy_bandwidth": 1.6e12,  # bytes/s of a copy within the GPU (read + write: half of HBM)
            # deltas.layer_stats on the GPU: ~100 B/param of traffic (subtract, abs, radix selections
            # of half of each layer and of what each kept, float64 norms): HBM / 100 / 1.5 (placeholder)
            "stats_elements_per_s": 22e9,
            "efficiency": 1.5,  # step time / roofline floor (placeholder)
            "step_overhead_s": 0.015,  # kernel launches and the loss's .item() of a batch-1 step (placeholder)
            "eval_overhead_s": 0.0065,  # a forward pass without gradients: 0.43 of a step's, as on the CPU (placeholder)
            "side_by_side_shares_overhead": True,  # one launch per operator for all the texts (placeholder)
            "job_start_s": 90.0,  # imports, process group, DeepSpeed set-up (placeholder)
            "load_bandwidth": 1.0e9,  # reading the checkpoint from a shared filesystem, bytes/s (placeholder)
            # Host memory of one process of a job besides the model's tensors: the interpreter, the
            # libraries and the CUDA context (placeholder; host_memory)
            "process_host_bytes": 3.0e9,
        },
        "h200": {
            "description": "NVIDIA H200 SXM 141 GB (data-sheet peaks; factors are placeholders)",
            "unit": "GPU",
            "memory_bandwidth": 4.8e12,  # HBM3e
            "flops": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
            "memory": 149e9,  # about 139 GiB of the 141 GB
            "link_bandwidth": 450e9,
            "host_bandwidth": 50e9,
            "host_optimizer_bandwidth": 80e9,
            "copy_bandwidth": 2.4e12,
            "stats_elements_per_s": 32e9,
            "efficiency": 1.5,
            "step_overhead_s": 0.015,
            "eval_overhead_s": 0.0065,
            "side_by_side_shares_overhead": True,
            "job_start_s": 90.0,
            "load_bandwidth": 1.0e9,
            "process_host_bytes": 3.0e9,
        },
        "cpu-2core": {
            "description": "this project's 2-core Xeon (machine B), 1 torch thread a job (measured)",
            "unit": "core",
            "memory_bandwidth": 20.3e9,  # effective: the measured (fused) AdamW step over its counted bytes
            "flops": {"bf16": 117e9, "fp16": 117e9, "fp32": 117e9},  # measured in fp32; CPU autocast not measured
            "memory": None,  # the host's: the base is always kept beside the weights
            "link_bandwidth": 7.0e9,  # the processes of a job exchange through memory: the copy rate
            "host_bandwidth": 7.0e9,  # the measured fp32 copy rate
            "host_optimizer_bandwidth": 20.3e9,  # the host is the device: its AdamW rate above
            "copy_bandwidth": 7.0e9,
            "stats_elements_per_s": 250e6,  # deltas.layer_stats on one thread (numpy)
            "efficiency": 1.0,  # the rates above are measured ones, not peaks
            "step_overhead_s": 0.0033,
            "eval_overhead_s": 0.0014,  # 0.43 of the step's, as measured side by side (above)
            # Measured: the demo's model with 50 texts side by side takes 4.7 ms a text and step,
            # one at a time 4.9 ms (bench_training.py, machine B): on this CPU a batched operator
            # costs about what its texts' operators cost one by one.
            "side_by_side_shares_overhead": False,
            "job_start_s": 4.2,
            "load_bandwidth": 0.5e9,  # placeholder: a local disk
            # A training job's process besides the tensors host_memory counts, machine B (CPU-only
            # torch; the imports alone take 465 MiB): 0.50-0.53 GB for a 29.4M-parameter job in fp32
            # on one thread (sketch and delta; calibrate_estimate.py prints its peak RSS and the
            # count side by side), 0.61 GB for a tiny one in bf16 on two (bench_gpu.py --device cpu)
            "process_host_bytes": 0.6e9,
        },
    },
    # A delta/full store write on the host (store.write_tensors, zstd level 3), per job; measured
    # here, and a cluster's host cores may well be faster.
    "host": {"store_write_bytes_per_s": 102e6},
    # Early stopping runs at most train.max_epochs epochs; the demo ran 26.8 of its 30 on
    # average (36,708 epochs in all, README), a fraction used as the expected value until a
    # real model measures its own (--es-epochs sets it).
    "es_expected_fraction": 0.89,
    # Tokens per word when no tokenizer of the model is on this machine (GPT-2-like BPE on English).
    "tokens_per_word": 1.4,
}

# Hub models the shipped configs name, for when they are not fetched: their config.json's
# architecture fields (enough to build the model on the meta device) and the parameter count
# that gives, checked by the tests.
KNOWN_MODELS = {
    "EleutherAI/gpt-j-6b": (
        "gptj",
        dict(
            vocab_size=50400,
            n_positions=2048,
            n_embd=4096,
            n_layer=28,
            n_head=16,
            rotary_dim=64,
            tie_word_embeddings=False,
        ),
        6_050_882_784,
    ),
    "facebook/opt-6.7b": (
        "opt",
        dict(
            vocab_size=50272,
            hidden_size=4096,
            num_hidden_layers=32,
            ffn_dim=16384,
            num_attention_heads=32,
            max_position_embeddings=2048,
            word_embed_proj_dim=4096,
        ),
        6_658_473_984,
    ),
    "EleutherAI/pythia-6.9b": (
        "gpt_neox",
        dict(
            vocab_size=50432,
            hidden_size=4096,
            num_hidden_layers=32,
            num_attention_heads=32,
            intermediate_size=16384,
            max_position_embeddings=2048,
            rotary_pct=0.25,
            tie_word_embeddings=False,
        ),
        6_857_302_016,
    ),
    "meta-llama/Llama-2-7b-hf": (
        "llama",
        dict(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        ),
        6_738_415_616,
    ),
}

# Disk of a job store (train.JobRecords: per-text records in the root's attributes, each array
# stacked over the job's texts), measured on stores it writes (zarr 3, zstd level 3, random data).
STAT_BYTES = 8  # the sketch statistics, loss and lr are float64
RECORD_BYTES = 380  # one text's record in the root's attributes, and its id in the text list
ARRAY_OVERHEAD = 680  # one array's zarr.json and zstd frame header
GROUP_OVERHEAD = 66  # one group's zarr.json
JOB_OVERHEAD = 2_500  # the root's zarr.json without the layer list and the records: provenance, settings
CHUNK_BYTES = 4 << 20  # store.write_tensors's chunk size: one file per chunk
BLOCK = 4096  # a file takes whole blocks of a filesystem (4 KiB on most)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SKETCH_ARRAYS = 6  # layer_l2, layer_sq, layer_topk_l2, tensor_l2, layer_dot, layer_base_sq (beside loss and lr)
# Fallback shape of a model known only by --params: about a 7B decoder's.
FALLBACK_LAYERS, FALLBACK_TENSORS, FALLBACK_CONTEXT = 300, 400, 2048


class EstimateError(ValueError):
    """The estimate cannot be made; the message says what is missing and how to give it."""


def traffic(
    engine: str,
    precision: str,
    optimizer: str,
    momentum: float,
    grad_clip: float,
    ranks: int,
    zero_stage: int,
    offload: bool = False,
) -> dict[str, float]:
    """Bytes moved per parameter by one optimizer step (batch 1) on one device, by phase.

    Returns {"forward_backward", "optimizer"} (device memory), "link" (between the GPUs of a
    job), "host" (the host's memory, for the whole model: ZeRO-Offload) and "pcie" (each GPU's
    copies to and from the host). Counted for the code in paramdelta.train:

    torch engine (one process; fp32 parameters and gradients):
      forward: read the fp32 weight (4); with bf16/fp16 autocast also write its 16-bit copy (2)
      backward: read the weight again (2 as the autocast copy, 4 in fp32), write the fp32 gradient (4)
      clipping (grad_clip > 0): read the gradients for the norm (4), scale them in place (8)
      AdamW: read+write the weight (8), read the gradient (4), read+write both moments (16) = 28
      SGD: weight (8) and gradient (4), and read+write the momentum buffer (8) if momentum > 0
      -> AdamW with clipping: 12 + 40 = 52 B/param, in fp32 and in bf16 alike.
    DeepSpeed ZeRO over N ranks (module weights w bytes: 2 in bf16/fp16, 4 in fp32); every rank
    trains the same chunk, so the forward and backward are whole on every rank:
      forward w, backward w + gradient w (3w); the gradients are reduce-scattered (read w) and each
      rank updates its 1/N shard in fp32: gradient to fp32 (w + 4), clipping (12), AdamW (28), the
      updated w-byte weights (w); ZeRO-1/2 all-gather them back (write w).
      link: reduce-scatter and all-gather w(N-1)/N each; ZeRO-3 instead gathers the weights for
      the forward and the backward (2w(N-1)/N) and keeps them sharded.
      -> bf16, ZeRO-2, 2 ranks, AdamW with clipping: 6 + 2 + 24 + 2 = 34 B/param, link 2 B/param.
    DeepSpeed with the optimizer offloaded to the host (ZeRO-Offload, `offload`): each rank reads
    its gradient shard (w/N) and writes its updated weights (w/N) on the GPU; each GPU's link to
    the host carries the shard's gradient as fp32 (4/N) and the updated weights back (w/N); the
    host, all the job's shards together, writes the gradients (4), clips (12) and steps (28).
    """
    clip = 12.0 if grad_clip > 0 else 0.0
    update = 28.0 if optimizer == "adamw" else 12.0 + (8.0 if momentum > 0 else 0.0)
    sixteen = precision in ("bf16", "fp16")
    if engine == "torch":
        return {
            "forward_backward": (6.0 if sixteen else 4.0) + (2.0 if sixteen else 4.0) + 4.0,
            "optimizer": clip + update,
            "link": 0.0,
            "host": 0.0,
            "pcie": 0.0,
        }
    w = 2.0 if sixteen else 4.0
    shared = (ranks - 1) / ranks
    gathers = ranks > 1 and zero_stage < 3
    scatter = w if ranks > 1 else 0.0
    if offload:
        on_device = scatter + 2 * w / ranks + (w if gathers else 0.0)
        host, pcie = 4.0 + clip + update, (4.0 + w) / ranks
    else:
        on_device = scatter + (w + 4.0 + clip + update + w) / ranks + (w if gathers else 0.0)
        host, pcie = 0.0, 0.0
    return {
        "forward_backward": 3 * w,
        "optimizer": on_device,
        "link": w * shared + (w * shared if zero_stage < 3 else 2 * w * shared),
        "host": host,
        "pcie": pcie,
    }


def gpu_bytes(
    engine: str,
    precision: str,
    optimizer: str,
    momentum: float,
    ranks: int,
    zero_stage: int,
    offload: bool = False,
    side_by_side: int = 1,
    best_copies: bool = False,
) -> float:
    """Bytes per parameter each GPU of a job holds before activations, as the engines allocate them.

    torch engine: the fp32 weights (4) and gradients (4), the optimizer's moments (AdamW 8, SGD with
      momentum 4), and under bf16/fp16 autocast the 16-bit copies of the weights a step keeps (2).
      One text at a time, the exact base stays there only if room is left (run_overhead). Texts
      side by side (`side_by_side` > 1) have each their own of all these, share the model's fp32
      weights as their base (4), and under early stopping (`best_copies`) each keep a copy of
      their best state (4).
    DeepSpeed ZeRO over N ranks (module weights w bytes: 2 in bf16/fp16, 4 in fp32): the module's
      weights (w; ZeRO-3 a 1/N shard) and 16-bit gradients (w; ZeRO-2 and 3 a shard), each rank's
      shard of the fp32 master (4), the moments and the fp32 gradient its step makes (4); under
      ZeRO-Offload the last three are in host memory.
      -> bf16, ZeRO-2, 2 ranks, AdamW: 2 + 1 + 8 = 11 B/param: 74 GB a GPU for a 6.74B model.
    """
    moments = 8.0 if optimizer == "adamw" else (4.0 if momentum > 0 else 0.0)
    sixteen = precision in ("bf16", "fp16")
    if engine == "torch":
        per_text = 8.0 + moments + (2.0 if sixteen else 0.0)
        if side_by_side == 1:
            return per_text
        return (per_text + (4.0 if best_copies else 0.0)) * side_by_side + 4.0
    w = 2.0 if sixteen else 4.0
    weights = w / ranks if zero_stage >= 3 else w
    gradients = w / ranks if zero_stage >= 2 else w
    optimizer_state = 0.0 if offload else (4.0 + moments + 4.0) / ranks
    return weights + gradients + optimizer_state


@dataclass
class ModelInfo:
    params: int
    layers: int  # parameter-owning modules (models.model_layers)
    tensors: int
    context: int
    layer_attrs: int  # bytes of the job store's layer list
    source: str


@dataclass
class Row:
    """The estimate of one (model, data set)."""

    model: str
    dataset: str
    texts: int
    tokens_per_text: float
    chunks_per_text: float
    params: int
    jobs: int
    steps: dict[str, float]  # per budget: optimizer steps per text ("es": expected)
    steps_es_max: float | None
    run_bytes: dict[str, float]  # per budget: store bytes of one (text, budget)
    store_bytes: float  # all the training stores of this (model, data set)
    store_files: int
    base_bytes: float  # the model's base snapshot (once per model, whatever its data sets)
    # device -> {"units": GPUs (cores) of a job, "step": mean s/step, "run": s around one fixed-budget
    # text-run, "expected"/"max": job seconds of all its jobs}
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Models.


def _meta_model(config):
    """The model of a transformers config on torch's meta device: shapes, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_config(config)


def _info_of_config(config, source: str) -> ModelInfo:
    from paramdelta import models

    model = _meta_model(config)
    layers = models.model_layers(model)
    listing = [
        {
            "name": layer.name,
            "group": layer.group,
            "block": layer.block,
            "numel": layer.numel,
            "params": list(layer.params),
        }
        for layer in layers
    ]
    try:
        context = models.context_length(config)
    except ValueError:
        context = FALLBACK_CONTEXT
    return ModelInfo(
        params=sum(p.numel() for p in model.parameters()),  # shared (tied) parameters once
        layers=len(layers),
        tensors=sum(len(layer.params) for layer in layers),
        context=context,
        layer_attrs=len(json.dumps(listing)),
        source=source,
    )


def _local_dir(path: str, revision: str | None) -> tuple[str | None, str]:
    """A model's directory on this machine and what it is ("the local directory", "the fetched
    snapshot"), or (None, why there is none)."""
    from paramdelta import hub

    if Path(path).is_dir():
        return path, "the local directory"
    if hub.is_hub_id(path):
        manifest = hub.fetched(hub.HubItem("model", "model", path, revision))
        if manifest is not None:
            return manifest["path"], "the fetched snapshot"
        return None, f"{path} is not fetched"
    return None, f"{path} is not on this machine"


def _pretrained_info(path: str, revision: str | None, params: int | None, explicit: bool) -> ModelInfo:
    """A pretrained model's size: `params` when named for it (--params MODEL=N), else its config.json
    on this machine, the built-in table, or `params` given for every unknown model (--params N)."""
    from transformers import AutoConfig

    given = ModelInfo(
        params or 0,
        FALLBACK_LAYERS,
        FALLBACK_TENSORS,
        FALLBACK_CONTEXT,
        60 * FALLBACK_LAYERS,
        "--params, with a 7B model's layers and context",
    )
    if params and explicit:
        return given
    directory, where = _local_dir(path, revision)
    if directory is not None:
        try:
            config = AutoConfig.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as error:
            if params:
                return given
            raise EstimateError(
                f"{path}: cannot read its config.json in {directory} ({error}); give its parameter count with --params"
            ) from None
        return _info_of_config(config, f"config.json of {where}")
    if path in KNOWN_MODELS:
        kind, fields, _ = KNOWN_MODELS[path]
        return _info_of_config(AutoConfig.for_model(kind, **fields), "the built-in table, not fetched")
    if params:
        return given
    raise EstimateError(
        f"{where} and not in the built-in table ({', '.join(KNOWN_MODELS)}): give its parameter count "
        "with --params N (or --params MODEL=N)"
    )


def _controlled_tokenizer(config: dict, slug: str, cache: dict | None = None):
    """The tokenizer a controlled model not built yet will have: trained as base_model trains it,
    on the background documents of its data set (models built on one data set share it)."""
    from paramdelta import data, target

    build = config["models"][slug]["build"]
    key = ("tokenizer", build["dataset"], build["vocab_size"])
    cache = cache if cache is not None else {}
    if key not in cache:
        controlled = config["datasets"][build["dataset"]]["controlled"]
        _, background = data.controlled_split(
            data.corpus_documents(controlled["corpus"]),
            controlled["candidates"],
            controlled["members"],
            controlled["seed"],
        )
        cache[key] = target.train_tokenizer(background, build["vocab_size"])
    return cache[key]


def _built_dir(config: dict, slug: str) -> Path | None:
    for stage in ("target", "base"):
        directory = Path(config["results"]) / "models" / slug / stage
        if (directory / "config.json").exists():
            return directory
    return None


def model_info(
    config: dict, slug: str, params: int | None = None, explicit: bool = False, tokenizer_cache: dict | None = None
) -> ModelInfo:
    """Parameters, layers and context of a configured model, read offline; `params` (from
    --params, `explicit` when it names this model) for a model of unknown size."""
    from paramdelta import models

    spec = config["models"][slug]
    if "path" in spec:
        return _pretrained_info(spec["path"], spec.get("revision"), params, explicit)
    build = spec["build"]
    if "base" in build:
        return _pretrained_info(build["base"], None, params, explicit)
    built = _built_dir(config, slug)
    if built is not None:
        from transformers import AutoConfig

        return _info_of_config(
            AutoConfig.from_pretrained(str(built), local_files_only=True), "config.json of the built model"
        )
    tokenizer = _controlled_tokenizer(config, slug, tokenizer_cache)
    tiny = models.build_config(build, tokenizer)
    return _info_of_config(tiny, "the build: section, via models.build_config")


def tokenizer_of(config: dict, slug: str, tokenizer_cache: dict | None = None):
    """The model's tokenizer if it is on this machine (or, for a controlled model, can be made
    as the workflow makes it), with where it came from; (None, why not) otherwise."""
    from transformers import AutoTokenizer

    spec = config["models"][slug]
    path = spec.get("path") or spec["build"].get("base")
    if path is None:
        built = _built_dir(config, slug)
        if built is not None:
            return AutoTokenizer.from_pretrained(str(built), local_files_only=True), "the tokenizer of the built model"
        return _controlled_tokenizer(
            config, slug, tokenizer_cache
        ), "a tokenizer trained as the base_model rule trains it"
    directory, where = _local_dir(path, spec.get("revision") if "path" in spec else None)
    if directory is None:
        return None, "no tokenizer on this machine"
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True), f"the tokenizer of {where}"
    except (OSError, ValueError):
        return None, f"no tokenizer in {where}"


# ---------------------------------------------------------------------------------------------
# Texts.


def _given(name: str, values: list[str] | None, what: str) -> int | None:
    """The value of --texts/--params for `name`: NAME=N for it, else a bare N (every one unknown)."""
    found = None
    for value in values or []:
        key, count = _count(value, what)
        if key == name or (key == "" and found is None):
            found = count
    return found


def dataset_table(config: dict, name: str):
    """(the candidate table of a data set, None), or (None, (why in a few words, the whole message))
    when its file is not on this machine."""
    from paramdelta import data, hub

    spec = config["datasets"][name]
    for key in ("path", "members", "nonmembers"):
        if key in spec and not Path(spec[key]).exists():
            return None, (f"{spec[key]} missing", f"data set {name}: {spec[key]} does not exist")
    if "hf" in spec:
        path = data.hub_cache_path(spec["hf"], spec["split"], spec.get("revision"))
        if not path.exists():
            return None, (
                "not fetched",
                f"data set {name} ({spec['hf']}, split {spec['split']}) is not fetched ({path} is "
                f"missing; `{hub.FETCH_COMMAND}` fetches it on a machine with network)",
            )
    try:
        return data.load(spec, name), None
    except data.DataError as error:
        raise EstimateError(str(error)) from None


def count_tokens(texts: list[str], tokenizer) -> list[int]:
    """Tokens of each text as the training job counts them (special tokens included)."""
    return [len(ids) for ids in tokenizer(list(texts))["input_ids"]]


# ---------------------------------------------------------------------------------------------
# The estimate.


def chunk_sizes(n_tokens: int, max_length: int) -> list[int]:
    """Sizes of the balanced chunks train.chunk cuts a text into (none below 2 tokens: not trained)."""
    if n_tokens < 2:
        return []
    n = math.ceil(n_tokens / max_length)
    return [n_tokens // n + (1 if i < n_tokens % n else 0) for i in range(n)]


def es_epochs(config: dict, override: int | None = None) -> tuple[int, int]:
    """Expected and maximum epochs of the early-stopping budget."""
    train = config["train"]
    cap = train["max_epochs"]
    if override is not None:
        return min(override, cap), cap
    expected = round(COST_MODEL["es_expected_fraction"] * cap)
    return max(min(cap, train["patience"] + 1), min(cap, expected)), cap


def _deepspeed_json(config: dict) -> dict:
    """train.deepspeed_config, read as the workflow finds it (inputs.deepspeed_path); {} where it
    cannot be read (the workflow's own checks say why before any job runs)."""
    from paramdelta.inputs import deepspeed_path

    path = deepspeed_path(config, Path(__file__).resolve().parent.parent)
    try:
        changed = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _read_json_object(str(path), changed)


@functools.lru_cache(maxsize=8)
def _read_json_object(path: str, changed: int) -> dict:
    # Read once (per version of the file): the step of every chunk of every text asks for the
    # ZeRO stage and the offload.
    try:
        parsed = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _zero_stage(config: dict, slug: str) -> int:
    stage = config["models"][slug].get("zero_stage")
    if stage is not None:
        return stage
    parsed = _deepspeed_json(config)
    # DeepSpeed's own default is stage 0; a JSON that cannot be read is priced as the shipped ZeRO-2.
    return int((parsed.get("zero_optimization") or {}).get("stage", 0)) if parsed else 2


def _offloads(config: dict, slug: str) -> bool:
    """Whether the model's DeepSpeed config keeps the optimizer in host memory (ZeRO-Offload)."""
    from paramdelta.config import offloads_optimizer

    engine = config["models"][slug].get("engine") or config["train"]["engine"]
    return engine == "deepspeed" and offloads_optimizer(_deepspeed_json(config))


def _engine(config: dict, slug: str) -> tuple[str, int, int]:
    """The training engine of a model, its processes (ranks) and how many texts train side by side."""
    spec, train = config["models"][slug], config["train"]
    engine = spec.get("engine") or train["engine"]
    ranks = max(1, spec["gpus"]) if engine == "deepspeed" else 1
    return engine, ranks, int(train["parallel_texts"]) if engine == "torch" else 1


def run_bytes(config: dict, info: ModelInfo, epochs: int) -> float:
    """Store bytes of one (text, budget) whose loss and lr rows are `epochs` long: its record, its
    rows of the job's stacked arrays, and under delta/full its own group of tensors; with
    snapshots.trajectory, each layer's change after each epoch too."""
    policy = config["snapshots"]["store"]
    record = RECORD_BYTES + 2 * STAT_BYTES * epochs
    if config["snapshots"].get("trajectory"):
        record += STAT_BYTES * info.layers * epochs
    if policy == "sketch":
        ks = len(config["features"]["k"])
        return record + STAT_BYTES * (info.layers * (4 + ks) + info.tensors)
    # delta / full: every parameter in the snapshot dtype (zstd compresses them about 1x), one
    # array per tensor, in texts/<id>/params.
    return (
        record
        + info.params * DTYPE_BYTES[config["snapshots"]["dtype"]]
        + info.tensors * ARRAY_OVERHEAD
        + 2 * GROUP_OVERHEAD
    )


def job_bytes(config: dict, info: ModelInfo) -> float:
    """Store bytes of one job besides its texts': the root's attributes and the arrays' metadata."""
    sketch = config["snapshots"]["store"] == "sketch"
    # loss and lr, the statistics, and the trajectory
    arrays = 2 + (SKETCH_ARRAYS if sketch else 0) + (1 if config["snapshots"].get("trajectory") else 0)
    return JOB_OVERHEAD + info.layer_attrs + arrays * ARRAY_OVERHEAD + (0 if sketch else GROUP_OVERHEAD)


def store_files(config: dict, info: ModelInfo, texts: int, jobs: int) -> int:
    """Files of `jobs` job stores holding `texts` texts in all."""
    trajectory = 1 if config["snapshots"].get("trajectory") else 0
    if config["snapshots"]["store"] == "sketch":
        # root zarr.json, zarr.json + a chunk per array
        return jobs * (1 + 2 * (2 + SKETCH_ARRAYS + trajectory))
    chunks = info.tensors + math.ceil(info.params * DTYPE_BYTES[config["snapshots"]["dtype"]] / CHUNK_BYTES)
    return jobs * (1 + 2 * (2 + trajectory) + 1) + texts * (2 + info.tensors + chunks)


def base_snapshot_bytes(config: dict, slug: str, info: ModelInfo) -> float:
    """The base snapshot: every parameter in the model's dtype (float32 for a built model)."""
    return info.params * DTYPE_BYTES[config["models"][slug]["dtype"]] + info.tensors * ARRAY_OVERHEAD + JOB_OVERHEAD


def memory_per_gpu(config: dict, slug: str, params: int) -> float:
    """Bytes each GPU of the model's jobs holds before activations (gpu_bytes)."""
    train = config["train"]
    engine, ranks, side_by_side = _engine(config, slug)
    stage = _zero_stage(config, slug) if engine == "deepspeed" else 0
    per_param = gpu_bytes(
        engine,
        train["precision"],
        train["optimizer"],
        train["momentum"],
        ranks,
        stage,
        _offloads(config, slug),
        side_by_side,
        _early_stopping(config),
    )
    return per_param * params


def _early_stopping(config: dict) -> bool:
    return "es" in map(str, config["budgets"])


def step_seconds(device: dict, config: dict, slug: str, params: int, tokens: int) -> float:
    """Seconds of one optimizer step of one text on a chunk of `tokens` tokens: the roofline of its phases.

    The forward and backward take the longer of moving their bytes and doing 6 x params x tokens
    FLOPs; the optimizer update moves its bytes; the GPUs of a job exchange theirs over the link;
    under ZeRO-Offload the host steps the optimizer at `host_optimizer_bandwidth` and each GPU's
    shard crosses PCIe at `host_bandwidth`;
    the sum times the device's efficiency factor, plus its fixed cost per step, shared by the texts
    trained side by side (train.parallel_texts) on a device whose batched operators share it
    (`side_by_side_shares_overhead`; not on the measured CPU).
    """
    train = config["train"]
    engine, ranks, side_by_side = _engine(config, slug)
    moved = traffic(
        engine,
        train["precision"],
        train["optimizer"],
        train["momentum"],
        train["grad_clip"],
        ranks,
        _zero_stage(config, slug) if engine == "deepspeed" else 0,
        _offloads(config, slug),
    )
    forward_backward = max(
        moved["forward_backward"] * params / device["memory_bandwidth"],
        6 * params * tokens / device["flops"][train["precision"]],
    )
    rest = (
        moved["optimizer"] * params / device["memory_bandwidth"]
        + moved["link"] * params / device["link_bandwidth"]
        + moved["host"] * params / device["host_optimizer_bandwidth"]
        + moved["pcie"] * params / device["host_bandwidth"]
    )
    shared_by = side_by_side if device["side_by_side_shares_overhead"] else 1
    return (forward_backward + rest) * device["efficiency"] + device["step_overhead_s"] / shared_by


def eval_seconds(device: dict, config: dict, slug: str, params: int, tokens: int) -> float:
    """Seconds of early stopping's evaluation of one chunk of `tokens` tokens: after every epoch of
    an `es` run, one forward pass over each of the text's chunks without gradients (train.train_text).

    The roofline of a forward pass, the longer of reading the weights (the torch engine: the fp32
    weight, and under bf16/fp16 autocast its 16-bit copy written; DeepSpeed: its w-byte module
    weights) and 2 x params x tokens FLOPs, times the efficiency factor, plus the device's fixed
    cost of a forward pass, shared like a step's by texts side by side."""
    train = config["train"]
    engine, _, side_by_side = _engine(config, slug)
    sixteen = _sixteen(config)
    weights = (6.0 if sixteen else 4.0) if engine == "torch" else (2.0 if sixteen else 4.0)
    forward = max(
        weights * params / device["memory_bandwidth"], 2 * params * tokens / device["flops"][train["precision"]]
    )
    shared_by = side_by_side if device["side_by_side_shares_overhead"] else 1
    return forward * device["efficiency"] + device["eval_overhead_s"] / shared_by


def base_bytes(config: dict, slug: str, params: int) -> float:
    """Bytes of the exact base the engines keep: in the narrowest dtype that holds it exactly
    (train.base_dtype), which for weights loaded from a checkpoint is the checkpoint's,
    models.<slug>.dtype (2 bytes a parameter for the 16-bit hub models, 4 for fp32 ones and for
    the models the workflow builds, float32 unless told otherwise). Texts side by side keep it
    in fp32."""
    _, _, side_by_side = _engine(config, slug)
    return params * (4 if side_by_side > 1 else DTYPE_BYTES[config["models"][slug]["dtype"]])


def _moments(config: dict) -> int:
    """fp32 moments a parameter of the optimizer: AdamW two, SGD with momentum one, else none."""
    train = config["train"]
    return 2 if train["optimizer"] == "adamw" else int(train["momentum"] > 0)


def _sixteen(config: dict) -> bool:
    """Whether the config trains under bf16/fp16: 16-bit autocast copies, or DeepSpeed's 16-bit module."""
    return config["train"]["precision"] in ("bf16", "fp16")


def _module_bytes(config: dict, slug: str, params: int) -> float:
    """Bytes of a DeepSpeed rank's module weights: 2 a parameter in bf16/fp16, 4 in fp32; ZeRO-3 a shard."""
    _, ranks, _ = _engine(config, slug)
    module = (2 if _sixteen(config) else 4) * params
    return module / (ranks if _zero_stage(config, slug) >= 3 else 1)


def _torch_room_for(device: dict, config: dict, params: int, extra: float) -> bool:
    """As train.TorchEngine decides at its start: whether the memory left beside the fp32 weights,
    less a tenth of the device kept for activations, holds the gradients, the optimizer's moments,
    under bf16/fp16 autocast the 16-bit copies of the weights, and `extra` bytes more."""
    fp32 = 4 * params
    state = (1 + _moments(config)) * fp32 + (fp32 // 2 if _sixteen(config) else 0)
    return device["memory"] is None or 0.9 * device["memory"] - fp32 > state + extra


def base_on_device(device: dict, config: dict, slug: str, params: int) -> bool:
    """Whether the model's engine keeps the exact base on the device (else in host memory)."""
    engine, ranks, side_by_side = _engine(config, slug)
    base = base_bytes(config, slug, params)
    if engine == "torch":
        # The base stays on the device where it fits beside the training state; else it is
        # restored from host memory.
        return side_by_side > 1 or _torch_room_for(device, config, params, base)
    # As train.DeepSpeedEngine decides after deepspeed.initialize, when each GPU holds the
    # module's weights and its shard of the fp32 master: the base moves there if it fits beside
    # what each rank makes at its first backward and step (train.deepspeed_state_to_come: the
    # reduction buckets, and unless ZeRO-Offload the gradient partitions and the moments).
    from paramdelta.config import deepspeed_first_step_bytes

    master = 0.0 if _offloads(config, slug) else 4 * params / ranks
    to_come = deepspeed_first_step_bytes(
        _deepspeed_json(config), params, ranks, precision=config["train"]["precision"], moments=_moments(config)
    )
    return (
        device["memory"] is None
        or 0.9 * device["memory"] - _module_bytes(config, slug, params) - master > base + to_come
    )


def replays(device: dict, config: dict, slug: str, params: int) -> bool:
    """Whether early stopping trains again to its best epoch instead of keeping its state at every
    new best (train.best_state; `auto` decided as train.replays decides it: on a GPU with no room
    for a copy of the state, where keeping it would cross the host link or gather it from
    several GPUs)."""
    setting = config["train"].get("best_state", "auto")
    if setting != "auto":
        return setting == "replay"
    engine, ranks, side_by_side = _engine(config, slug)
    if side_by_side > 1 or device["unit"] != "GPU":
        return False
    local = base_on_device(device, config, slug, params)
    # As train.TorchEngine: a copy of the state on the device where one more fp32 copy fits beside the base.
    if (
        engine == "torch"
        and local
        and _torch_room_for(device, config, params, base_bytes(config, slug, params) + 4 * params)
    ):
        return False
    sketch = config["snapshots"]["store"] == "sketch"
    return not sketch or not local or ranks > 1


def _digest_bytes(config: dict, slug: str, params: int) -> float:
    """Bytes a GPU reads for the digest replaying takes at each new best epoch (train.bit_sums):
    the fp32 parameters (torch engine), each rank's fp32 master partition (DeepSpeed), or under
    ZeRO-Offload the rank's module weights."""
    engine, ranks, _ = _engine(config, slug)
    if engine == "torch":
        return 4 * params
    return _module_bytes(config, slug, params) if _offloads(config, slug) else 4 * params / ranks


def run_overhead(device: dict, config: dict, slug: str, params: int, keeps: int) -> dict[str, float]:
    """Seconds around the steps of one (text, budget), by what they do.

    "copies": restoring the base (within the device, or from host memory), and under delta/full
    the states taken to host memory; "keep": the `keeps` summaries (sketch: the statistics,
    computed where the parameters are, with the base brought there if it is on the host, and
    gathered whole under DeepSpeed) or the store write on the host (delta/full). `keeps` is 1 for
    a fixed budget, and under early stopping the number of epochs that set a new best.
    """
    engine, ranks, _ = _engine(config, slug)
    offload = _offloads(config, slug)
    fp32 = 4 * params
    base = base_bytes(config, slug, params)
    local = base_on_device(device, config, slug, params)
    # Within the device a copy that writes the fp32 weights; from host memory the base's own bytes.
    to_device = fp32 / device["copy_bandwidth"] if local else base / device["host_bandwidth"]
    # DeepSpeed writes the base twice: into the module, and into the fp32 master from where the
    # module's copy came (within the device), or under ZeRO-Offload from host memory.
    if engine == "torch":
        restore = to_device
    elif offload:
        restore = to_device + fp32 / device["host_bandwidth"]
    else:
        restore = to_device + fp32 / device["copy_bandwidth"]
    gather = fp32 * (ranks - 1) / ranks / device["link_bandwidth"]  # DeepSpeed: the whole fp32 master, tensor by tensor
    if config["snapshots"]["store"] == "sketch":
        summary = params / device["stats_elements_per_s"] + (0.0 if local else base / device["host_bandwidth"]) + gather
        return {"copies": restore, "keep": keeps * summary}
    # delta / full: a best state per new best epoch under es (to host memory, at most), the final state,
    # and its store write.
    states = keeps * (fp32 / device["host_bandwidth"] + gather)
    write = params * DTYPE_BYTES[config["snapshots"]["dtype"]] / COST_MODEL["host"]["store_write_bytes_per_s"]
    return {"copies": restore + states, "keep": write}


def run_overhead_seconds(device: dict, config: dict, slug: str, params: int, keeps: int) -> float:
    """Seconds around the steps of one (text, budget): see run_overhead."""
    return sum(run_overhead(device, config, slug, params, keeps).values())


def host_memory(device: dict, config: dict, slug: str, params: int) -> float:
    """Peak bytes of host memory of one training job, all its processes together: what the
    model's mem_mb must hold (SLURM kills a job that goes over).

    Counted for the code in paramdelta.train_job and paramdelta.train, in bytes a parameter (fp32
    is 4), before the `process_host_bytes` of each process:
    - every process loads the model in fp32 (4) on the host;
    - the exact base takes b (base_bytes: 2 from a 16-bit checkpoint, else 4);
    - torch engine on a GPU: the model moves there; the base stays in page-locked host memory
      (b) where it does not fit on the device (base_on_device), in 1 GiB slabs (train.HostSlabs:
      the last one part-empty);
    - torch engine on a CPU, where the host is the device: the weights (4), gradients (4), the
      optimizer's moments (AdamW 8, SGD with momentum 4), the base (b) and under early stopping
      a copy of the best state (4; for delta/full it is the state the store takes); texts side
      by side (train.parallel_texts) each have their own weights, gradients, moments and best
      copy, and take the model's weights as their base;
    - DeepSpeed, N ranks: each rank copies the base while its fp32 model is still on the host
      (4 + b a rank, the peak of a job that keeps nothing else there), and keeps it (b a rank)
      unless it moves to the device; ZeRO-Offload keeps each rank's partition of the fp32
      master, of its fp32 gradient and a 16-bit copy of it page-locked, each one allocation that
      torch's pinned allocator rounds up to a power of two, a page-locked 16-bit buffer of the
      largest parameter's gradient (counted as 1 GiB), and the moments (AdamW 8) beside them; it
      makes each master as a pageable copy (4) before pinning it, while the base is on the host;
    - delta/full: the state taken to the host for the store (4, rank 0; on a GPU page-locked,
      in 1 GiB slabs).
    Not counted: activations of a few hundred tokens, the page cache of the checkpoint, and the
    few copies of the largest tensor that loading and a delta record make in passing.
    """
    engine, ranks, side_by_side = _engine(config, slug)
    train = config["train"]
    moments = 4.0 * _moments(config)  # bytes a parameter
    fp32 = 4.0 * params
    base = base_bytes(config, slug, params)
    state = 0.0 if config["snapshots"]["store"] == "sketch" else fp32
    on_gpu = device["unit"] == "GPU"
    local = base_on_device(device, config, slug, params)
    slab = float(1 << 30)
    if on_gpu and state:
        state += slab
    if engine == "torch":
        if not on_gpu:
            training = (8.0 + moments) * params * side_by_side
            # Early stopping's copy of the best state (the host is the device: one always fits).
            best = fp32 if _early_stopping(config) else 0.0
            if side_by_side > 1:  # each text its best copy, then its state copied for the store
                peak = training + base + side_by_side * (best + state)
            else:  # the best copy is the state the store takes
                peak = training + base + max(best, state)
        else:
            peak = max(fp32, (0.0 if local else base + slab) + state * side_by_side)
    else:
        offload, start = 0.0, 0.0
        if _offloads(config, slug):
            share = params / ranks
            # and a page-locked buffer of the largest parameter's gradient, in 16 bits (about 0.5 GB at 7B)
            offload = ranks * (2 * _pinned(4 * share) + _pinned(2 * share) + moments * share + slab)
            # DeepSpeed makes each rank's master as a pageable copy first, beside the base
            start = ranks * (base + 4 * share) + offload
        if on_gpu:
            kept = ranks * (0.0 if local else base + slab) + offload
        else:  # the host is the device: each rank's share of the training state, and its base
            per_param = gpu_bytes(
                engine, train["precision"], train["optimizer"], train["momentum"], ranks, _zero_stage(config, slug)
            )
            kept = ranks * (per_param * params + base) + offload
        peak = max(ranks * (fp32 + base), start, kept + state)
    return peak + ranks * device["process_host_bytes"]


def _pinned(size: float) -> float:
    """Bytes torch's page-locked allocator takes for one allocation of `size`: a power of two."""
    return float(2 ** math.ceil(math.log2(size))) if size > 0 else 0.0


def mem_mb_bytes(config: dict, slug: str) -> float:
    """The host memory a model's jobs ask SLURM for (models.<slug>.mem_mb: megabytes as SLURM
    counts them, 2^20 bytes), at the first attempt."""
    return config["models"][slug]["mem_mb"] * float(1 << 20)


def estimate(
    config: dict,
    devices: list[str],
    *,
    texts: list[str] | None = None,
    words_per_text: float | None = None,
    tokens_per_text: float | None = None,
    params: list[str] | None = None,
    es: int | None = None,
    notes: list[tuple[str, str, str]] | None = None,
) -> list[Row]:
    """The estimate of every (model, data set) the configuration trains, on each of `devices`.

    Raises EstimateError naming what is unknown (a data set not on this machine without
    --texts, a model of unknown size without --params). `notes` collects where each number came
    from, as (what, source, whose) triples.
    """
    from paramdelta import config as config_checks

    notes = notes if notes is not None else []
    unknown = [d for d in devices if d not in COST_MODEL["devices"]]
    if unknown:
        raise EstimateError(f"unknown device {unknown}; known: {', '.join(COST_MODEL['devices'])}")
    budgets = [str(b) for b in config["budgets"]]
    es_expected, es_max = es_epochs(config, es)
    tokenizers: dict = {}
    tables, missing = {}, []
    used = sorted({d for slug in config["models"] for d in config_checks.model_datasets(config, slug)})
    for name in used:
        table, why = dataset_table(config, name)
        if table is None:
            count = _given(name, texts, "--texts")
            if count is None:
                missing.append(why[1])
            elif tokens_per_text is None and words_per_text is None:
                missing.append(f"{why[1]}; --texts gives its size, but its tokens per text are unknown too")
            else:
                limit = config["datasets"][name].get("limit")
                tables[name] = min(count, limit) if limit else count
                notes.append(("texts", f"--texts, data set {why[0]}", name))
        else:
            tables[name] = table
            spec = config["datasets"][name]
            kind = (
                "the controlled split, made as the workflow makes it"
                if "controlled" in spec
                else "the fetched hub split"
                if "hf" in spec
                else "the data set's file"
            )
            notes.append(("texts", kind, name))
    if missing:
        raise EstimateError(
            "the texts are unknown: " + "; ".join(missing) + ". To estimate without the data set, "
            "give its number of texts and their length: --texts N (or --texts NAME=N) and "
            "--words-per-text W (or --tokens-per-text T)."
        )

    rows = []
    for slug in config["models"]:
        given = _given(slug, params, "--params")
        explicit = any(_count(value, "--params")[0] == slug for value in params or [])
        info = model_info(config, slug, given, explicit, tokenizers)
        max_length = config["train"].get("max_length") or info.context
        tokenizer, tokenizer_source = None, ""
        for name in config_checks.model_datasets(config, slug):
            table = tables[name]
            if isinstance(table, int):
                per_text = (
                    tokens_per_text
                    if tokens_per_text is not None
                    else round(words_per_text * COST_MODEL["tokens_per_word"])
                )
                source = (
                    "--tokens-per-text"
                    if tokens_per_text is not None
                    else f"~{COST_MODEL['tokens_per_word']} tokens a word x {words_per_text:g} words, --words-per-text"
                )
                counts, ids = [int(per_text)] * table, None
            else:
                if tokenizer is None and not tokenizer_source:
                    tokenizer, tokenizer_source = tokenizer_of(config, slug, tokenizers)
                if tokenizer is not None:
                    counts, source = count_tokens(table["text"].tolist(), tokenizer), tokenizer_source
                else:
                    words = table["text"].str.split().str.len()
                    counts = [max(1, round(w * COST_MODEL["tokens_per_word"])) for w in words]
                    source = f"~{COST_MODEL['tokens_per_word']} tokens a word, {tokenizer_source}"
                ids = table["text_id"].tolist()
            notes.append(("parameters", info.source, slug))
            notes.append(("tokens", source, f"{slug} on {name}" if len(tables) > 1 else slug))
            rows.append(_row(config, slug, name, info, counts, ids, max_length, budgets, es_expected, es_max, devices))
    return rows


def _row(config, slug, name, info, counts, ids, max_length, budgets, es_expected, es_max, devices) -> Row:
    from paramdelta import config as config_checks
    from paramdelta import data

    spec, train = config["models"][slug], config["train"]
    per_text = [chunk_sizes(n, max_length) for n in counts]
    chunks = sum(len(c) for c in per_text)
    n = len(counts)
    cut = data.shards(ids, config["texts_per_job"]) if ids is not None else None
    shards = len(cut) if cut is not None else math.ceil(n / config["texts_per_job"])
    # Texts of the largest job: data.shards cuts at hash boundaries, about texts_per_job a shard and
    # never more than twice that, which is the bound where the ids are not known yet.
    largest = max(map(len, cut.values())) if cut else min(n, 2 * config["texts_per_job"])
    # Runs per budget: the train: block's, and each optimizers: entry that runs it.
    settings = config_checks.optimizer_settings(config)
    runs = {b: sum(b in config_checks.optimizer_budgets(config, setting) for setting in settings) for b in budgets}
    jobs = shards * sum(runs.values())
    epochs = {b: (es_expected if b == "es" else int(b)) for b in budgets}
    # A job's loss and lr rows are as long as its longest run: under es, up to max_epochs.
    sizes = {b: run_bytes(config, info, es_max if b == "es" else e) for b, e in epochs.items()}
    row = Row(
        model=slug,
        dataset=name,
        texts=n,
        tokens_per_text=sum(counts) / n,
        chunks_per_text=chunks / n,
        params=info.params,
        jobs=jobs,
        steps={b: e * chunks / n for b, e in epochs.items()},
        steps_es_max=es_max * chunks / n if "es" in budgets else None,
        run_bytes=sizes,
        store_bytes=n * sum(size * runs[b] for b, size in sizes.items()) + jobs * job_bytes(config, info),
        store_files=store_files(config, info, n * sum(runs.values()), jobs),
        base_bytes=base_snapshot_bytes(config, slug, info),
    )
    trained = sum(1 for c in per_text if c)  # a text below 2 tokens is recorded, not trained
    _, _, side_by_side = _engine(config, slug)
    for device_name in devices:
        device = COST_MODEL["devices"][device_name]
        epoch = sum(step_seconds(device, config, slug, info.params, t) for sizes_ in per_text for t in sizes_)
        # Under es, every epoch ends with a forward pass over each chunk (the loss early stopping compares).
        evaluation = sum(eval_seconds(device, config, slug, info.params, t) for sizes_ in per_text for t in sizes_)
        job = device["job_start_s"] + info.params * DTYPE_BYTES[spec["dtype"]] / device["load_bandwidth"]
        replay = "es" in budgets and replays(device, config, slug, info.params)
        # Replaying: the base restored again, and a pass over the state for its digest at each new best.
        restore = run_overhead(device, config, slug, info.params, 0)["copies"]
        digest = _digest_bytes(config, slug, info.params) / device["memory_bandwidth"]
        seconds = {}
        for case in ("expected", "max"):
            parts = {"steps": 0.0, "replays": 0.0, "copies": 0.0, "keep": 0.0, "starts": jobs * job}
            text_seconds = {}  # per budget: seconds of one text's run (a mean over the texts)
            for b in budgets:
                before = sum(parts.values())
                e = epochs[b]
                if b == "es" and (case == "max" or side_by_side > 1):
                    e = es_max  # side by side, a group is stepped until its longest run stops
                # Under es, a summary (or a best state) at every new best epoch: all but the last
                # `patience` epochs expected, every epoch at most. Or, replaying, one, after
                # training again to the best epoch (at most the one before the last) and its
                # evaluation.
                best = max(1, epochs[b] - train["patience"]) if case == "expected" else e - 1
                keeps = 1 if b != "es" or replay else (e if case == "max" else best)
                parts["steps"] += runs[b] * e * (epoch + (evaluation if b == "es" else 0.0))
                if b == "es" and replay and best >= 1:
                    # A digest at every new best epoch, then the base restored again, the best
                    # epoch's steps, one evaluation.
                    digests = (e if case == "max" else best) * digest
                    parts["replays"] += runs[b] * (trained * (restore + digests) + best * epoch + evaluation)
                for part, value in run_overhead(device, config, slug, info.params, keeps).items():
                    parts[part] += runs[b] * trained * value
                if runs[b]:
                    text_seconds[b] = (sum(parts.values()) - before) / (runs[b] * n)
            seconds[case] = sum(parts.values())
            if case == "max":
                # The longest job: the largest shard of texts at the dearest budget, every run at
                # its longest (texts of the mean length); what the model's runtime must hold.
                seconds["longest_job"] = job + largest * max(text_seconds.values(), default=0.0)
            if case == "expected":
                seconds.update({f"expected_{part}": value for part, value in parts.items()})
        units = max(1, spec["gpus"]) if device["unit"] == "GPU" else max(1, spec.get("cpus") or config["threads"])
        row.seconds[device_name] = {
            "units": units,
            "step": epoch / chunks if chunks else 0.0,
            "run": run_overhead_seconds(device, config, slug, info.params, 1),
            **seconds,
        }
    return row


# ---------------------------------------------------------------------------------------------
# Printing.


def human_bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError


def human_count(value: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f}"


def human_seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 120:
        return f"{value:.3g} s"
    return f"{value / 60:.3g} min"


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def table(header: list[str], rows: list[list[str]], left: int = 2) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _over_limit(what: str, config: dict, field: str, needs: dict[str, int], advice: str, unit: str = "") -> str:
    """A line naming the models whose jobs need more than their `field` (SLURM's limit), and what they need."""
    listed = "; ".join(
        f"{slug}: {field} {config['models'][slug][field]:,}{unit}, needs about {need:,}" for slug, need in needs.items()
    )
    return f"{what} ({listed}): {advice}"


def render(config: dict, rows: list[Row], devices: list[str], notes: list[tuple[str, str, str]], title: str) -> str:
    """The estimate as text: texts and steps, time per device, disk, assumptions and sources."""
    budgets = [str(b) for b in config["budgets"]]
    out = [title, ""]
    body = []
    for r in rows:
        steps = [
            _number(r.steps[b]) if b != "es" else f"{_number(r.steps[b])}/{_number(r.steps_es_max)}" for b in budgets
        ]
        body.append(
            [
                r.model,
                r.dataset,
                f"{r.texts:,}",
                _number(r.tokens_per_text),
                f"{r.chunks_per_text:.2f}",
                human_count(r.params),
                *steps,
                f"{r.jobs:,}",
            ]
        )
    steps_header = [f"steps {b}" if b != "es" else "steps es" for b in budgets]
    out.append(
        table(["model", "data set", "texts", "tokens/text", "chunks/text", "params", *steps_header, "jobs"], body)
    )
    out.append(
        "steps: optimizer steps per (text, budget) = epochs x chunks"
        + ("; es: expected/upper bound (max_epochs)" if "es" in budgets else "")
    )

    for device_name in devices:
        device = COST_MODEL["devices"][device_name]
        unit = device["unit"]
        body, total, over, host_over, late = [], {"expected": 0.0, "max": 0.0}, [], {}, {}
        for r in rows:
            s = r.seconds[device_name]
            hours = {case: s[case] / 3600 for case in total}
            memory = "-"
            if device["unit"] == "GPU":
                needed = memory_per_gpu(config, r.model, r.params)
                memory = human_bytes(needed)
                if needed > device["memory"]:
                    memory += " (over)"
                    if r.model not in over:
                        over.append(r.model)
            host = host_memory(device, config, r.model, r.params)
            host_cell = human_bytes(host)
            if host > mem_mb_bytes(config, r.model):
                host_cell += " (over)"
                host_over[r.model] = host
            runtime = 60 * config["models"][r.model]["runtime"]
            longest = human_seconds(s["longest_job"])
            if s["longest_job"] > runtime:
                longest += " (over)"
                late[r.model] = max(late.get(r.model, 0.0), s["longest_job"])
            body.append(
                [
                    r.model,
                    r.dataset,
                    str(s["units"]),
                    memory,
                    host_cell,
                    human_seconds(s["step"]),
                    human_seconds(s["run"]),
                    longest,
                    _range(hours["expected"], hours["max"]),
                    _range(s["units"] * hours["expected"], s["units"] * hours["max"]),
                ]
            )
            for case in total:
                total[case] += s["units"] * hours[case]
        body.append(["total", "", "", "", "", "", "", "", "", _range(total["expected"], total["max"])])
        header = [
            "model",
            "data set",
            f"{unit}s/job",
            "memory/GPU",
            "host/job",
            "s/step",
            "s/text-run",
            "longest job",
            "job-hours",
            f"{unit}-hours",
        ]
        out += ["", f"Time on {device_name}: {device['description']}", table(header, body)]
        if over:
            out.append(
                f"memory/GPU over the {human_bytes(device['memory'])} of one {device_name} GPU ({', '.join(over)}): "
                "these jobs would run out of memory; more GPUs a job (DeepSpeed ZeRO), ZeRO-Offload "
                "(config/deepspeed_zero2_offload.json) or a larger GPU"
            )
        if host_over:
            out.append(
                _over_limit(
                    "host/job over the job's mem_mb",
                    config,
                    "mem_mb",
                    {slug: math.ceil(need / (1 << 20)) for slug, need in host_over.items()},
                    "SLURM would kill these jobs for going over their memory; raise models.<name>.mem_mb",
                )
            )
        if late:
            out.append(
                _over_limit(
                    "longest job over the model's runtime",
                    config,
                    "runtime",
                    {slug: math.ceil(need / 60) for slug, need in late.items()},
                    "SLURM would stop these jobs at their time limit, and a retry starts them over; raise "
                    "models.<name>.runtime, or lower texts_per_job",
                    unit=" min",
                )
            )
        parts = {
            name: sum(r.seconds[device_name]["units"] * r.seconds[device_name][f"expected_{name}"] for r in rows)
            for name in ("steps", "replays", "copies", "keep", "starts")
        }
        share = {name: f"{100 * value / (sum(parts.values()) or 1.0):.0f}%" for name, value in parts.items()}
        sketch = config["snapshots"]["store"] == "sketch"
        keep = "statistics (summaries)" if sketch else "store writes on the host"
        copies = "base restores" if sketch else "base restores and state copies"
        replayed = f"early stopping's replays of its best epoch {share['replays']}, " if parts["replays"] else ""
        out.append(
            f"of the expected {unit}-hours: optimizer steps {share['steps']}, {replayed}{keep} {share['keep']}, "
            f"{copies} {share['copies']}, job starts {share['starts']}"
        )
    out.append(
        "memory/GPU: weights, gradients and optimizer state each GPU holds, before activations (estimate.gpu_bytes); "
        "host/job: the peak host memory of a training job, all its processes (estimate.host_memory), "
        "against its models.<name>.mem_mb; "
        "s/text-run: the base restore and the statistics or state around the steps of one text and fixed "
        "budget; longest job: the largest shard of texts at the dearest budget, every run at its longest, against "
        "models.<name>.runtime; hours: expected / with every es run at max_epochs"
    )

    policy, dtype = config["snapshots"]["store"], config["snapshots"]["dtype"]
    what = "float64 statistics" if policy == "sketch" else f"{dtype} parameters, compressed ~1x"
    body, total, files, seen = [], 0.0, 0, set()
    for r in rows:
        distinct = list(dict.fromkeys(human_bytes(r.run_bytes[b]) for b in budgets))
        base = ""
        if r.model not in seen:
            seen.add(r.model)
            total += r.base_bytes
            base = human_bytes(r.base_bytes)
        total += r.store_bytes
        files += r.store_files
        body.append(
            [
                r.model,
                r.dataset,
                " to ".join(distinct[:: max(1, len(distinct) - 1)]),
                human_bytes(r.store_bytes),
                f"{r.store_files:,}",
                base,
            ]
        )
    body.append(["total", "", "", "", f"{files:,}", human_bytes(total)])
    out += [
        "",
        f"Disk: training stores (snapshots.store: {policy}, {what}) and one base snapshot per model (its dtype)",
        table(["model", "data set", "per text-run", "train stores", "files", "base snapshot"], body),
    ]
    out.append(
        f"at least one {BLOCK // 1024} KiB block a file on most filesystems: the stores' files take >= "
        f"{human_bytes(files * BLOCK)}; delta tables and the Hugging Face cache not counted"
    )

    out += ["", "Assumptions: " + _assumptions(config, devices)]
    grouped: dict[str, dict[str, list[str]]] = {}
    for what, source, whose in notes:
        names = grouped.setdefault(what, {}).setdefault(source, [])
        if whose not in names:
            names.append(whose)
    for what, sources in grouped.items():
        out.append(
            f"{what.capitalize()} from "
            + "; ".join(f"{source} ({', '.join(names)})" for source, names in sources.items())
            + "."
        )
    return "\n".join(out)


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _range(expected: float, maximum: float) -> str:
    low, high = _hours(expected), _hours(maximum)
    return low if low == high else f"{low} / {high}"


def _assumptions(config: dict, devices: list[str]) -> str:
    kinds: dict[str, list[str]] = {}
    train = config["train"]
    for slug in config["models"]:
        engine, ranks, side_by_side = _engine(config, slug)
        stage = _zero_stage(config, slug) if engine == "deepspeed" else 0
        offload = _offloads(config, slug)
        moved = traffic(
            engine, train["precision"], train["optimizer"], train["momentum"], train["grad_clip"], ranks, stage, offload
        )
        how = ", ".join(
            filter(
                None,
                [
                    f"{engine} ZeRO-{stage}{'-Offload' if offload else ''} on {ranks} GPUs"
                    if engine == "deepspeed"
                    else engine,
                    train["precision"],
                    train["optimizer"],
                    f"{side_by_side} texts side by side" if side_by_side > 1 else "",
                ],
            )
        )
        what = (
            f"{moved['forward_backward'] + moved['optimizer']:g} B/param"
            + (f" + {moved['link']:g} over the link" if moved["link"] else "")
            + (f" + {moved['host']:g} in host memory + {moved['pcie']:g} over PCIe" if moved["host"] else "")
            + f" ({how})"
        )
        kinds.setdefault(what, []).append(slug)
    gpu = [d for d in devices if COST_MODEL["devices"][d]["unit"] == "GPU"]
    parts = [
        "training jobs only; a step is the roofline of its memory traffic, "
        + "; ".join(f"{what} for {', '.join(slugs)}" for what, slugs in kinds.items())
        + " (estimate.traffic), and of 6 x params x tokens FLOPs, times an efficiency factor, plus a fixed cost",
    ]
    if gpu:
        parts.append(
            "the GPUs of a job all train the same chunk (ZeRO only spreads the memory): GPU-hours = GPUs x job-hours"
        )
        parts.append(f"the GPU factors ({', '.join(gpu)}) are placeholders until issue 8's GPU benchmarks measure them")
    return "; ".join(parts) + "."


def _count(value: str, what: str) -> tuple[str, int]:
    """NAME=N or N (NAME ''), with N an integer (6.9e9 allowed)."""
    key, _, number = value.rpartition("=")
    try:
        count = float(number)
    except ValueError:
        raise EstimateError(f"{what} {value!r}: expected N or NAME=N with N a number") from None
    return key, int(count)


def main(argv: list[str] | None = None) -> None:
    from paramdelta import config as config_checks
    from paramdelta import hub

    parser = argparse.ArgumentParser(
        prog="python -m paramdelta.estimate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configfile", required=True, action="append", help="as given to snakemake; repeat it to merge several"
    )
    parser.add_argument(
        "--gpu",
        action="append",
        choices=list(COST_MODEL["devices"]),
        dest="devices",
        help="device to time the steps on, repeat for several (default: h100 if a model asks for GPUs, else cpu-2core)",
    )
    parser.add_argument(
        "--texts",
        action="append",
        default=[],
        metavar="[DATASET=]N",
        help="number of texts of a data set that is not on this machine",
    )
    parser.add_argument(
        "--words-per-text", type=float, help="words per text of such a data set (counted ~1.4 tokens a word)"
    )
    parser.add_argument("--tokens-per-text", type=float, help="tokens per text of such a data set")
    parser.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="[MODEL=]N",
        help="parameter count of a model that is neither on this machine nor in the built-in table",
    )
    parser.add_argument(
        "--es-epochs",
        type=int,
        help="expected epochs of the early-stopping budget "
        f"(default {COST_MODEL['es_expected_fraction']} x train.max_epochs)",
    )
    args = parser.parse_args(argv)
    hub.offline()  # never download: every number comes from what is on this machine
    try:
        config = hub.load_config(args.configfile)
    except (OSError, config_checks.ConfigError) as error:
        parser.exit(2, f"error: {error}\n")
    devices = args.devices or (["h100"] if any(m["gpus"] > 0 for m in config["models"].values()) else ["cpu-2core"])
    notes: list[tuple[str, str, str]] = []
    try:
        rows = estimate(
            config,
            devices,
            texts=args.texts,
            words_per_text=args.words_per_text,
            tokens_per_text=args.tokens_per_text,
            params=args.params,
            es=args.es_epochs,
            notes=notes,
        )
    except EstimateError as error:
        parser.exit(2, f"error: {error}\n")
    budgets = [str(b) for b in config["budgets"]]
    title = f"Cost estimate of {', '.join(args.configfile)}: budgets {', '.join(budgets)}"
    if "es" in budgets:
        expected, cap = es_epochs(config, args.es_epochs)
        why = (
            "--es-epochs"
            if args.es_epochs
            else f"{COST_MODEL['es_expected_fraction']} x the cap, as the demo measured; --es-epochs sets it"
        )
        title += f" (es: at most {cap} epochs, train.max_epochs; expected {expected}, {why})"
    print(render(config, rows, devices, notes, title))


if __name__ == "__main__":
    main()
