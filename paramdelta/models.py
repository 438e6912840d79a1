"""Causal language models: tiny local architectures, loading, and what a "layer" is.

The method measures, per layer, ||theta_after - theta_before||_2.  A *layer* here is
every module that directly owns parameters (for the supported architectures these are
exactly the leaf modules: Linear, LayerNorm/RMSNorm, Embedding, ...), with all of its
own parameters (weight and bias) taken together.

Each layer is put in one module group:

* ``attention`` -- projections inside attention blocks (q/k/v/o, query_key_value,
  attention.dense, out_proj);
* ``mlp``       -- feed-forward projections (fc1/fc2, fc_in/fc_out, gate/up/down_proj,
  dense_h_to_4h/dense_4h_to_h);
* ``norm``      -- any normalisation layer (LayerNorm, RMSNorm, LlamaRMSNorm, ...);
* ``embedding`` -- input token and position embeddings, the LM head / output embedding,
  and OPT's project_in/project_out (they map word embeddings to and from the hidden size);
* ``other``     -- anything the rules below do not recognise.

Tied weights: a parameter shared by several modules (e.g. the LM head tied to the input
embedding) is counted once, in the first module of ``model.named_modules()`` order that
owns it -- the same owner whose name ``model.named_parameters()`` reports.  A module whose
parameters were all counted elsewhere (the tied ``lm_head``) is not a layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

# torch and transformers are imported where a model is built, loaded or walked: a job that
# only reads layer names (the delta tables) does not pay their seconds of import.
if TYPE_CHECKING:
    import torch
    import transformers

ARCHITECTURES: tuple[str, ...] = ("gpt-neox", "llama", "gptj", "opt")
GROUPS: tuple[str, ...] = ("attention", "mlp", "norm", "embedding", "other")

# Substrings of an enclosing module's name that decide the group of everything inside it.
# The enclosing module is trusted before the leaf name because leaf names such as
# "dense" or "out_proj" are used by both attention and feed-forward blocks.
_ATTENTION_CONTAINERS = ("attn", "attention")
_MLP_CONTAINERS = ("mlp", "ffn", "feed_forward", "feedforward")

_ATTENTION_LEAVES = frozenset(
    {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "out_proj",
        "qkv_proj",
        "query_key_value",
        "query",
        "key",
        "value",
        "c_attn",
        "c_proj_attn",
    }
)
_MLP_LEAVES = frozenset(
    {
        "fc1",
        "fc2",
        "fc_in",
        "fc_out",
        "gate_proj",
        "up_proj",
        "down_proj",
        "gate_up_proj",
        "dense_h_to_4h",
        "dense_4h_to_h",
        "c_fc",
        "w1",
        "w2",
        "w3",
    }
)
_EMBEDDING_LEAVES = frozenset(
    {"lm_head", "embed_out", "embed_in", "embed_tokens", "embed_positions", "wte", "wpe", "project_in", "project_out"}
)
_NORM_NAME = re.compile(r"norm|^ln(_\w+)?$")

_BLOCK_INDEX = re.compile(r"\.(?:layers|layer|h|blocks|block)\.(\d+)(?:\.|$)")

# Attribute names under which configs of different families store their context length.
_CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class Layer:
    """One parameter-owning module of a model."""

    index: int  # position in module order, 0..n-1
    name: str  # module name, e.g. "gpt_neox.layers.0.attention.dense"
    group: str  # one of GROUPS
    block: int  # transformer block index parsed from the name, -1 if none
    params: tuple[str, ...]  # full parameter names owned by this layer: weight first, then bias
    numel: int


def _is_norm(module: torch.nn.Module) -> bool:
    import torch

    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm)
    return isinstance(module, norm_types) or "Norm" in type(module).__name__


def module_group(name: str, module: torch.nn.Module) -> str:
    """The module group (one of GROUPS) of the module called ``name``."""
    import torch

    parts = name.split(".") if name else []
    leaf = parts[-1] if parts else ""
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if _is_norm(module) or _NORM_NAME.search(leaf):
        return "norm"
    if leaf in _EMBEDDING_LEAVES:
        return "embedding"
    for part in reversed(parts[:-1]):
        if any(token in part for token in _ATTENTION_CONTAINERS):
            return "attention"
        if any(token in part for token in _MLP_CONTAINERS):
            return "mlp"
    if leaf in _ATTENTION_LEAVES or any(token in leaf for token in _ATTENTION_CONTAINERS):
        return "attention"
    if leaf in _MLP_LEAVES or any(token in leaf for token in _MLP_CONTAINERS):
        return "mlp"
    return "other"


def _block_index(name: str) -> int:
    match = _BLOCK_INDEX.search("." + name)
    return int(match.group(1)) if match else -1


def _weight_first(local_name: str) -> int:
    return {"weight": 0, "bias": 1}.get(local_name, 2)


def model_layers(model: torch.nn.Module) -> list[Layer]:
    """All layers of ``model`` in module order; every unique parameter is in exactly one."""
    seen: set[int] = set()
    layers: list[Layer] = []
    for name, module in model.named_modules():
        owned = []
        for local_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            owned.append((local_name, param))
        if not owned:
            continue
        owned.sort(key=lambda item: _weight_first(item[0]))  # stable: other names keep their order
        prefix = f"{name}." if name else ""
        layers.append(
            Layer(
                index=len(layers),
                name=name,
                group=module_group(name, module),
                block=_block_index(name),
                params=tuple(prefix + local_name for local_name, _ in owned),
                numel=sum(param.numel() for _, param in owned),
            )
        )
    return layers


def tiny_config(
    arch: str,
    vocab_size: int,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_positions: int = 256,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
) -> transformers.PretrainedConfig:
    """A small config of architecture ``arch`` (one of ARCHITECTURES)."""
    from transformers import GPTJConfig, GPTNeoXConfig, LlamaConfig, OPTConfig

    intermediate = intermediate_size if intermediate_size is not None else 4 * hidden_size
    # Special token ids are always passed, so that the families' defaults (e.g. GPT-J's
    # 50256) never point outside a small vocabulary.
    tokens = dict(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    if arch == "gpt-neox":
        return GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate,
            max_position_embeddings=max_positions,
            **tokens,
        )
    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            intermediate_size=intermediate,
            max_position_embeddings=max_positions,
            **tokens,
        )
    if arch == "gptj":
        # GPT-J-6B rotates a quarter of each head; tiny heads rotate half (an even count).
        rotary_dim = max(2, hidden_size // num_heads // 4 * 2)
        return GPTJConfig(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_inner=intermediate,
            n_positions=max_positions,
            rotary_dim=rotary_dim,
            **tokens,
        )
    if arch == "opt":
        return OPTConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            ffn_dim=intermediate,
            word_embed_proj_dim=hidden_size,
            max_position_embeddings=max_positions,
            **tokens,
        )
    raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")


def build_config(build: dict, tokenizer) -> transformers.PretrainedConfig:
    """The architecture of a built model (a config's `models.<slug>.build` section, completed)
    with the vocabulary and special tokens of ``tokenizer``."""
    return tiny_config(
        build["arch"],
        len(tokenizer),
        hidden_size=build["hidden_size"],
        num_layers=build["num_layers"],
        num_heads=build["num_heads"],
        intermediate_size=build["intermediate_size"],
        max_positions=build["max_positions"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(config: transformers.PretrainedConfig, seed: int) -> transformers.PreTrainedModel:
    """A randomly initialised fp32 causal LM; the same seed gives the same weights (on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    # fork_rng keeps the caller's global torch RNG stream untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model


def local_path(path: str, revision: str | None = None) -> str:
    """The directory a model loads from: a local directory as it is, a hub id from the snapshot
    that `python -m paramdelta.hub fetch` (or the workflow's fetch_model rule) recorded.

    Jobs never download: a hub model that was not fetched is an error naming the command.
    """
    from pathlib import Path

    from paramdelta import hub

    return path if Path(path).is_dir() else hub.resolve(path, revision)["path"]


def load_causal_lm(
    path: str, *, dtype: torch.dtype | None = None, revision: str | None = None
) -> transformers.PreTrainedModel:
    """Load a causal LM from a local directory or a fetched hub id, in training mode (float32
    unless `dtype` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(local_path(path, revision), dtype=dtype or torch.float32)
    model.train()
    return model


def context_length(model_or_config) -> int:
    """The maximum number of positions the model accepts."""
    config = getattr(model_or_config, "config", model_or_config)
    for attribute in _CONTEXT_ATTRIBUTES:
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot find the context length of {type(config).__name__}")


def load_with_tokenizer(path: str, *, revision: str | None = None, dtype: torch.dtype | None = None):
    """A causal LM and its tokenizer from one local directory or hub id: what every job loads."""
    from transformers import AutoTokenizer

    return load_causal_lm(path, dtype=dtype, revision=revision), AutoTokenizer.from_pretrained(
        local_path(path, revision)
    )
