"""Tests of the model helpers: layer partition, module groups, building and loading."""

import pytest
import torch

from paramdelta.models import (
    ARCHITECTURES,
    GROUPS,
    build_model,
    context_length,
    load_causal_lm,
    model_layers,
    module_group,
    tiny_config,
)

VOCAB = 96

# (module name, group, block) that each architecture must contain.
EXPECTED = {
    "gpt-neox": [
        ("gpt_neox.embed_in", "embedding", -1),
        ("gpt_neox.layers.0.input_layernorm", "norm", 0),
        ("gpt_neox.layers.0.post_attention_layernorm", "norm", 0),
        ("gpt_neox.layers.0.attention.query_key_value", "attention", 0),
        ("gpt_neox.layers.1.attention.dense", "attention", 1),
        ("gpt_neox.layers.0.mlp.dense_h_to_4h", "mlp", 0),
        ("gpt_neox.layers.1.mlp.dense_4h_to_h", "mlp", 1),
        ("gpt_neox.final_layer_norm", "norm", -1),
        ("lm_head", "embedding", -1),
    ],
    "llama": [
        ("model.embed_tokens", "embedding", -1),
        ("model.layers.0.self_attn.q_proj", "attention", 0),
        ("model.layers.0.self_attn.k_proj", "attention", 0),
        ("model.layers.1.self_attn.v_proj", "attention", 1),
        ("model.layers.1.self_attn.o_proj", "attention", 1),
        ("model.layers.0.mlp.gate_proj", "mlp", 0),
        ("model.layers.0.mlp.up_proj", "mlp", 0),
        ("model.layers.1.mlp.down_proj", "mlp", 1),
        ("model.layers.1.input_layernorm", "norm", 1),
        ("model.layers.0.post_attention_layernorm", "norm", 0),
        ("model.norm", "norm", -1),
        ("lm_head", "embedding", -1),
    ],
    "gptj": [
        ("transformer.wte", "embedding", -1),
        ("transformer.h.0.ln_1", "norm", 0),
        ("transformer.h.1.attn.q_proj", "attention", 1),
        ("transformer.h.0.attn.out_proj", "attention", 0),
        ("transformer.h.0.mlp.fc_in", "mlp", 0),
        ("transformer.h.1.mlp.fc_out", "mlp", 1),
        ("transformer.ln_f", "norm", -1),
        ("lm_head", "embedding", -1),
    ],
    "opt": [
        ("model.decoder.embed_tokens", "embedding", -1),
        ("model.decoder.embed_positions", "embedding", -1),
        ("model.decoder.layers.0.self_attn.q_proj", "attention", 0),
        ("model.decoder.layers.1.self_attn.out_proj", "attention", 1),
        ("model.decoder.layers.0.self_attn_layer_norm", "norm", 0),
        ("model.decoder.layers.0.fc1", "mlp", 0),
        ("model.decoder.layers.1.fc2", "mlp", 1),
        ("model.decoder.layers.1.final_layer_norm", "norm", 1),
        ("model.decoder.final_layer_norm", "norm", -1),
    ],
}


def _tiny(arch: str, seed: int = 0, **overrides):
    config = tiny_config(arch, VOCAB, hidden_size=32, num_heads=4, max_positions=64)
    for key, value in overrides.items():
        setattr(config, key, value)
    return build_model(config, seed)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch_model(request):
    return request.param, _tiny(request.param)


def test_every_parameter_in_exactly_one_layer(arch_model):
    _, model = arch_model
    layers = model_layers(model)
    unique = {id(p): p for p in model.parameters()}
    named = dict(model.named_parameters())
    owners: dict[int, str] = {}
    for layer in layers:
        for param_name in layer.params:
            param = named[param_name]
            assert id(param) not in owners, f"{param_name} also in {owners[id(param)]}"
            owners[id(param)] = layer.name
        assert layer.numel == sum(named[name].numel() for name in layer.params)
    assert set(owners) == set(unique)
    assert sum(layer.numel for layer in layers) == sum(p.numel() for p in unique.values())
    assert [layer.index for layer in layers] == list(range(len(layers)))


def test_groups_and_blocks(arch_model):
    arch, model = arch_model
    by_name = {layer.name: layer for layer in model_layers(model)}
    for name, group, block in EXPECTED[arch]:
        assert by_name[name].group == group, name
        assert by_name[name].block == block, name
    groups = {layer.group for layer in by_name.values()}
    assert groups == set(GROUPS) - {"other"}
    blocks = {layer.block for layer in by_name.values()}
    assert blocks == {-1, 0, 1}


def test_params_weight_before_bias(arch_model):
    _, model = arch_model
    for layer in model_layers(model):
        assert layer.params[0].endswith(".weight")
        if len(layer.params) == 2:
            assert layer.params[1].endswith(".bias")


@pytest.mark.parametrize("arch", ["opt", "llama"])
def test_tied_head_counted_once_in_input_embedding(arch):
    model = _tiny(arch, tie_word_embeddings=True)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    layers = model_layers(model)
    assert "lm_head" not in {layer.name for layer in layers}
    embedding = next(layer for layer in layers if layer.params[0].endswith("embed_tokens.weight"))
    assert embedding.group == "embedding"


def test_untied_llama_head_is_its_own_layer():
    model = _tiny("llama", tie_word_embeddings=False)
    head = [layer for layer in model_layers(model) if layer.name == "lm_head"]
    assert len(head) == 1 and head[0].group == "embedding"


def test_generic_fallback_for_unknown_modules():
    linear = torch.nn.Linear(2, 2)
    assert module_group("blocks.3.attn.c_proj", linear) == "attention"
    assert module_group("encoder.layer.0.attention.output.dense", linear) == "attention"
    assert module_group("blocks.3.ffn.out_proj", linear) == "mlp"
    assert module_group("blocks.3.w2", linear) == "mlp"
    assert module_group("blocks.3.q_proj", linear) == "attention"
    assert module_group("blocks.3.ln_2", torch.nn.LayerNorm(2)) == "norm"
    assert module_group("blocks.3.weird", torch.nn.RMSNorm(2)) == "norm"
    assert module_group("tok", torch.nn.Embedding(3, 2)) == "embedding"
    assert module_group("score", linear) == "other"


def test_fallback_partition_of_custom_model():
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))  # owned by the root module
            self.proj = torch.nn.Linear(3, 3)

    layers = model_layers(Custom())
    assert [(layer.name, layer.params, layer.group, layer.block) for layer in layers] == [
        ("", ("scale",), "other", -1),
        ("proj", ("proj.weight", "proj.bias"), "other", -1),
    ]


def test_unknown_architecture():
    with pytest.raises(ValueError, match="mamba.*gpt-neox"):
        tiny_config("mamba", VOCAB)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_config_shape(arch):
    config = tiny_config(arch, VOCAB, hidden_size=32, num_layers=3, max_positions=48, eos_token_id=1)
    assert config.vocab_size == VOCAB
    assert config.eos_token_id == 1
    assert config.bos_token_id is None
    assert context_length(config) == 48
    model = build_model(config, seed=0)
    assert context_length(model) == 48
    assert len({layer.block for layer in model_layers(model)} - {-1}) == 3
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_seeded_build():
    first, again, other = (_tiny("llama", seed=seed).state_dict() for seed in (3, 3, 4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _tiny("gptj", seed=9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_save_and_load_round_trip(arch, tmp_path):
    model = _tiny(arch, seed=5)
    model.save_pretrained(tmp_path)
    loaded = load_causal_lm(str(tmp_path))
    assert loaded.training
    assert type(loaded) is type(model)
    original, reloaded = dict(model.named_parameters()), dict(loaded.named_parameters())
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    assert [layer.name for layer in model_layers(loaded)] == [layer.name for layer in model_layers(model)]
    half = load_causal_lm(str(tmp_path), dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
