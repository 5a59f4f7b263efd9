"""`fuse_lora` on INT8 layers: merge, re-quantize per channel (input_scale kept); `unfuse_lora` restores exactly."""

from __future__ import annotations

import pytest
import torch
from lora_helpers import draw_lora, expected_updates, merged_then_requantized, run, write_lora

from flux2_int8 import Int8Linear
from flux2_int8.lora import Int8LoraLinear
from flux2_int8.int8.weights import quantize_weight, weight_scale_per_channel
from flux2_int8.lora.layers import requantize_int8
from flux2_int8.evaluate.metrics import relative_error


@pytest.mark.parametrize("lora_scale", [1.0, 0.6])
def test_fused_weights_and_output_match_merge_then_requantize(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline, lora_scale):
    state = int8_file[1]
    lora = draw_lora(tiny_config, seed=5)
    path, with_alpha = write_lora("ai-toolkit", tmp_path, lora)
    int8_pipeline.load_lora_weights(str(path))
    int8_pipeline.fuse_lora(lora_scale=lora_scale)
    transformer = int8_pipeline.transformer
    expected = merged_then_requantized(state, expected_updates(lora, with_alpha), lora_scale)
    for module, (weight, weight_scale) in expected.items():
        base = transformer.get_submodule(module).get_base_layer()
        # float32 (the layer) vs float64 (here) merging may land a value on the other side of a rounding
        # boundary: at most one int8 step, on a handful of weights.
        assert torch.allclose(base.weight_scale, weight_scale.float(), rtol=1e-6), module
        steps = (base.weight.int() - weight.int()).abs()
        assert steps.max() <= 1 and (steps > 0).float().mean() < 1e-3, module
        assert torch.equal(base.input_scale, state[f"{module}.input_scale"].reshape(())), module
    unfused_reference = int8_pipeline.transformer  # the fused model must equal an INT8 model with the fused weights
    fused_output = run(unfused_reference, tiny_inputs, torch.float32)
    for module, (weight, weight_scale) in expected.items():
        base = transformer.get_submodule(module).get_base_layer()
        base.weight.data.copy_(weight)
        base.weight_scale.copy_(weight_scale)
    assert relative_error(fused_output, run(transformer, tiny_inputs, torch.float32)) < 1e-4


def test_unfuse_restores_the_original_int8_tensors_exactly(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    transformer = int8_pipeline.transformer
    before = {key: value.clone() for key, value in transformer.state_dict().items()}
    output_before = run(transformer, tiny_inputs, torch.float32)
    # A LoRA of realistic strength: one that moves activations far outside the calibrated
    # range is clamped by the kept input_scale once fused (see docs/generate.md, LoRA).
    path, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, seed=6, size=0.2))
    int8_pipeline.load_lora_weights(str(path), adapter_name="style")
    unfused = run(transformer, tiny_inputs, torch.float32)
    int8_pipeline.fuse_lora()
    layer = transformer.transformer_blocks[0].attn.to_q
    assert isinstance(layer, Int8LoraLinear) and layer.merged
    assert not torch.equal(layer.get_base_layer().weight, before["transformer_blocks.0.attn.to_q.weight"])
    # fused differs from unfused by the re-quantized weight and the branch now seeing the int8
    # input: measured 2e-4 here against the LoRA's own effect of 5e-3
    fused_error = relative_error(run(transformer, tiny_inputs, torch.float32), unfused)
    assert fused_error < 0.1 * relative_error(unfused, output_before)
    int8_pipeline.unfuse_lora()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), unfused)
    int8_pipeline.unload_lora_weights()
    after = transformer.state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items())
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), output_before)


def test_fuse_then_unload_leaves_plain_int8_layers(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    path, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, seed=7))
    int8_pipeline.load_lora_weights(str(path))
    int8_pipeline.fuse_lora()
    fused = run(int8_pipeline.transformer, tiny_inputs, torch.float32)
    int8_pipeline.unload_lora_weights()  # diffusers' way to keep a fused LoRA and drop the adapter layers
    layer = int8_pipeline.transformer.transformer_blocks[0].attn.to_q
    assert type(layer) is Int8Linear and layer.weight.dtype == torch.int8
    assert torch.equal(run(int8_pipeline.transformer, tiny_inputs, torch.float32), fused)


def test_smoothquant_layers_fuse_in_their_own_input_domain():
    """With ModelOpt's pre_quant_scale s the layer computes (x * s) @ W.T, so the merged weight takes delta / s."""
    from peft import LoraConfig, inject_adapter_in_model

    from flux2_int8.lora import register_peft_layers

    register_peft_layers()
    generator = torch.Generator().manual_seed(0)
    float_weight = torch.randn(48, 32, generator=generator)
    layer = Int8Linear(32, 48, pre_quant_scale=True)
    layer.pre_quant_scale.copy_(torch.rand(32, generator=generator) + 0.5)
    layer.weight.data, weight_scale = requantize_int8(float_weight * layer.pre_quant_scale)
    layer.weight_scale.copy_(weight_scale)
    layer.input_scale.fill_(0.05)
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["0"]), torch.nn.Sequential(layer))
    wrapped = model[0]
    with torch.no_grad():
        wrapped.lora_B["default"].weight.normal_(generator=generator)
    a, b = wrapped.lora_A["default"].weight.detach().double(), wrapped.lora_B["default"].weight.detach().double()
    wrapped.merge()
    original = wrapped._original_tensors
    merged = original["weight"].double() * original["weight_scale"].double()[:, None] + 2.0 * (b @ a) / layer.pre_quant_scale.double()[None, :]
    expected_scale = weight_scale_per_channel(merged)
    assert torch.allclose(layer.weight_scale, expected_scale.float(), rtol=1e-6)
    assert (layer.weight.int() - quantize_weight(merged, expected_scale).int()).abs().max() <= 1
