"""Random-weight models: built on meta, filled on the device, in every format."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import Qwen3Config

from flux2_int8.bench.random_weights import (
    empty_transformer,
    materialize_random_,
    planned_bytes,
    quantized_linear_names,
    qwen3_config_for,
    random_text_encoder,
    random_transformer,
    random_vae,
)
from flux2_int8.bench.timing import host_rss_bytes
from flux2_int8.errors import ConfigError
from flux2_int8.int8 import Fp8Linear, Int8Linear
from flux2_int8.tiny import TINY_TEXT_ENCODER_CONFIG, TINY_VAE_CONFIG
from flux2_int8.tiny import random_transformer_inputs
from flux2_int8.variants import KLEIN_4B, KLEIN_9B, Architecture

# A klein with the real head size (the rope axes need 128) but one head and one block of each kind.
SMALL = Architecture("small", num_layers=1, num_single_layers=1, num_attention_heads=1, joint_attention_dim=96, in_channels=32, timestep_guidance_channels=32)


def _all_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*model.named_parameters(), *model.named_buffers()]


@pytest.mark.parametrize(("fmt", "layer_class", "weight_dtype"), [("int8", Int8Linear, torch.int8), ("fp8", Fp8Linear, torch.float8_e4m3fn)])
def test_quantized_random_transformer_has_real_quantized_layers(fmt, layer_class, weight_dtype):
    model = random_transformer(SMALL, fmt, "cpu")
    assert not [name for name, tensor in _all_tensors(model) if tensor.is_meta]
    quantized = {name for name, module in model.named_modules() if isinstance(module, layer_class)}
    assert len(quantized) == 12 + 2  # double block: q,k,v,out x 2 streams + 2 MLPs x 2; single: qkv_mlp, out
    for name in quantized:
        layer = model.get_submodule(name)
        assert layer.weight.dtype == weight_dtype and layer.weight.device.type == "cpu"
        assert layer.weight_scale.dtype == torch.float32 and layer.weight_scale.shape == (layer.out_features,)
        assert layer.input_scale.dtype == torch.float32 and layer.input_scale.shape == ()
        assert (layer.weight_scale > 0).all() and layer.input_scale > 0
        assert layer.weight.float().abs().amax() > 0  # random, never all zeros
    kept = [module for name, module in model.named_modules() if type(module) is nn.Linear]
    assert kept and all(module.weight.dtype == torch.bfloat16 for module in kept)


def test_int8_weights_use_the_full_range_per_channel():
    model = random_transformer(SMALL, "int8", "cpu")
    layer = model.get_submodule("single_transformer_blocks.0.attn.to_out")
    assert (layer.weight.abs().amax(dim=1) == 127).all()  # per-channel scale: every row reaches 127


def test_bf16_random_transformer_runs_and_is_finite():
    model = random_transformer(SMALL, "bf16", "cpu")
    assert {tensor.dtype for _, tensor in _all_tensors(model)} == {torch.bfloat16}
    inputs = random_transformer_inputs(SMALL.transformer_config(), dtype=torch.bfloat16)
    with torch.no_grad():
        output = model(**inputs).sample
    assert torch.isfinite(output).all() and output.abs().mean() > 0


def test_seed_decides_the_weights():
    first, again, other = (random_transformer(SMALL, "int8", "cpu", seed=s) for s in (0, 0, 1))
    name = "transformer_blocks.0.ff.linear_in.weight"
    assert torch.equal(first.state_dict()[name], again.state_dict()[name])
    assert not torch.equal(first.state_dict()[name], other.state_dict()[name])


def test_full_size_9b_skeleton_costs_no_memory():
    rss_before = host_rss_bytes()
    bf16 = empty_transformer(KLEIN_9B.transformer_config(), "bf16")
    int8 = empty_transformer(KLEIN_9B.transformer_config(), "int8")
    assert all(tensor.is_meta for _, tensor in _all_tensors(int8) + _all_tensors(bf16))
    assert host_rss_bytes() - rss_before < 300_000_000
    assert len(quantized_linear_names(bf16)) == 144  # FORMATS.md: 144 linears inside the 9B blocks
    assert planned_bytes(bf16) == pytest.approx(2 * 9.08e9, rel=0.01)  # 9.08 B parameters in BF16
    quantized = sum(m.weight.numel() for m in int8.modules() if isinstance(m, Int8Linear))
    assert quantized == pytest.approx(8.72e9, rel=0.01)  # 8.72 B int8 block weights, 1 byte each
    assert planned_bytes(int8) == pytest.approx(planned_bytes(bf16) - quantized, rel=0.001)


def test_meta_buffers_are_refused():
    with torch.device("meta"):
        module = nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match="running_mean"):
        materialize_random_(module, "cpu", torch.bfloat16)


def test_text_encoder_config_follows_the_architecture():
    assert qwen3_config_for(KLEIN_4B).hidden_size * 3 == KLEIN_4B.joint_attention_dim
    assert qwen3_config_for(KLEIN_9B).hidden_size * 3 == KLEIN_9B.joint_attention_dim
    assert qwen3_config_for(KLEIN_4B).tie_word_embeddings and not qwen3_config_for(KLEIN_9B).tie_word_embeddings
    with pytest.raises(ConfigError, match="hidden size 32"):
        qwen3_config_for(SMALL)


def test_random_text_encoder_and_vae_are_complete():
    encoder = random_text_encoder(Qwen3Config(**TINY_TEXT_ENCODER_CONFIG), "cpu")
    assert encoder.lm_head.weight is encoder.model.embed_tokens.weight  # tied, as in Qwen3-4B
    assert not [name for name, tensor in _all_tensors(encoder) if tensor.is_meta]
    assert encoder.dtype == torch.bfloat16
    hidden = encoder(input_ids=torch.arange(8)[None], output_hidden_states=True).hidden_states[-1]
    assert torch.isfinite(hidden).all()
    vae = random_vae("cpu", config=TINY_VAE_CONFIG)
    assert not [name for name, tensor in _all_tensors(vae) if tensor.is_meta]
    assert vae.dtype == torch.bfloat16
