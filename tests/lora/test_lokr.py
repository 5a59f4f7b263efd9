"""LoKr files, loaded with diffusers' own `pipe.load_lora_weights` on INT8 and FP8 pipelines, against a
float64 reference: the fake-quantized base plus scale * (w1 (x) w2) on the raw input.

An ai-toolkit LoKr targets the fused q/k/v, so loading it fuses the INT8 q/k/v layers (exactly: the
int8 rows and their scales are concatenated) and they stay fused, as diffusers leaves a BF16 model.
Tolerance 1e-4 relative, as in test_layouts.py.
"""

from __future__ import annotations

import pytest
import torch
from lokr_helpers import quantized_rows, write_lokr
from lora_helpers import merged_then_requantized, reference_transformer, run

from flux2_int8 import Int8Linear
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.lora import Fp8LoKrLinear, Int8LoKrLinear

TOLERANCE = 1e-4


def reference(config, state, adapters, inputs) -> torch.Tensor:
    return run(reference_transformer(config, state, adapters), inputs, torch.float64)


@pytest.mark.parametrize(("layout", "layer_name"), [("ai-toolkit", "to_qkv"), ("lycoris", "to_q")])
def test_lokr_layout_matches_float64_reference(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline, layout, layer_name):
    path, updates = write_lokr(layout, tmp_path, tiny_config)
    int8_pipeline.load_lora_weights(str(path), adapter_name="detail")
    transformer = int8_pipeline.transformer
    layer = getattr(transformer.transformer_blocks[0].attn, layer_name)
    assert isinstance(layer, Int8LoKrLinear)
    assert "detail" in (layer.lokr_w2 if layout == "ai-toolkit" else layer.lokr_w2_b)  # full w2, or LyCORIS' halves
    expected = reference(tiny_config, int8_file[1], [(updates, 1.0)], tiny_inputs)
    assert relative_error(expected, reference(tiny_config, int8_file[1], [], tiny_inputs)) > 100 * TOLERANCE  # the LoKr matters
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE


def test_two_lokrs_with_weights_then_disable_enable_unload(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline):
    transformer = int8_pipeline.transformer
    before = run(transformer, tiny_inputs, torch.float32)
    first, first_updates = write_lokr("ai-toolkit", tmp_path, tiny_config, seed=1, name="first")
    second, second_updates = write_lokr("ai-toolkit", tmp_path, tiny_config, seed=2, name="second")
    int8_pipeline.load_lora_weights(str(first), adapter_name="first")
    int8_pipeline.load_lora_weights(str(second), adapter_name="second")
    int8_pipeline.set_adapters(["first", "second"], adapter_weights=[0.5, 1.5])
    expected = reference(tiny_config, int8_file[1], [(first_updates, 0.5), (second_updates, 1.5)], tiny_inputs)
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE

    int8_pipeline.set_adapters("second", adapter_weights=0.25)
    expected = reference(tiny_config, int8_file[1], [(second_updates, 0.25)], tiny_inputs)
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE

    int8_pipeline.disable_lora()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)
    int8_pipeline.enable_lora()
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE

    int8_pipeline.unload_lora_weights()
    assert type(transformer.transformer_blocks[0].attn.to_qkv) is Int8Linear  # q/k/v stay fused, as on BF16
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


def test_transformer_level_load_lora_adapter_and_unload_restore_every_tensor(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline):
    transformer = int8_pipeline.transformer
    before_state = {key: value.clone() for key, value in transformer.state_dict().items()}
    before = run(transformer, tiny_inputs, torch.float32)
    path, updates = write_lokr("lycoris", tmp_path, tiny_config, seed=3)
    state = type(int8_pipeline).lora_state_dict(str(path))  # the transformer-level call takes converted tensors
    transformer.load_lora_adapter(state, prefix="transformer", adapter_name="detail")
    assert relative_error(run(transformer, tiny_inputs, torch.float32), reference(tiny_config, int8_file[1], [(updates, 1.0)], tiny_inputs)) < TOLERANCE
    transformer.unload_lora()
    after = transformer.state_dict()
    assert after.keys() == before_state.keys() and all(torch.equal(after[key], value) for key, value in before_state.items())
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


@pytest.mark.parametrize("layout", ["ai-toolkit", "lycoris"])
def test_fused_lokr_matches_merge_then_requantize_and_unfuses_exactly(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline, layout):
    state = int8_file[1]
    transformer = int8_pipeline.transformer
    before = run(transformer, tiny_inputs, torch.float32)
    path, updates = write_lokr(layout, tmp_path, tiny_config, seed=5, size=0.2)  # a realistic strength: see test_fuse.py
    int8_pipeline.load_lora_weights(str(path), adapter_name="detail")
    int8_pipeline.set_adapters("detail", adapter_weights=0.6)
    unfused = run(transformer, tiny_inputs, torch.float32)
    int8_pipeline.set_adapters("detail", adapter_weights=1.0)
    originals = {module: _rows(transformer, module) for module in updates}
    int8_pipeline.fuse_lora(lora_scale=0.6)  # scales the adapter by 0.6 and leaves it so (diffusers' way): `unfused` above
    fused = run(transformer, tiny_inputs, torch.float32)
    for module, (weight, weight_scale) in merged_then_requantized(state, updates, 0.6).items():
        layer, rows = quantized_rows(transformer, module)
        # float32 (the layer) vs float64 (here) merging may land a value on the other side of a rounding boundary
        assert torch.allclose(layer.weight_scale[rows], weight_scale, rtol=1e-6), module
        steps = (layer.weight[rows].int() - weight.int()).abs()
        assert steps.max() <= 1 and (steps > 0).float().mean() < 1e-3, module
        assert torch.equal(layer.input_scale, state[f"{module}.input_scale"].reshape(())), module
        layer.weight.data[rows], layer.weight_scale[rows] = weight, weight_scale  # the fused tensors are new ones
    # the fused model computes what an INT8 model with the independently merged weights computes
    assert relative_error(fused, run(transformer, tiny_inputs, torch.float32)) < TOLERANCE

    int8_pipeline.unfuse_lora()
    for module, (weight, weight_scale) in originals.items():
        assert all(torch.equal(now, then) for now, then in zip(_rows(transformer, module), (weight, weight_scale))), module
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), unfused)
    int8_pipeline.unload_lora_weights()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


def _rows(transformer, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    layer, rows = quantized_rows(transformer, module)
    return layer.weight[rows].clone(), layer.weight_scale[rows].clone()


def test_fp8_layers_take_lokrs_too(tmp_path, tiny_config, tiny_inputs, fp8_pipeline):
    # The BFL FP8 file re-scales q/k/v to one per-tensor scale when fusing them, so the
    # reference starts from the layers as loaded (see test_layouts.py).
    transformer = fp8_pipeline.transformer
    loaded = {key: value.clone() for key, value in transformer.state_dict().items()}
    before = run(transformer, tiny_inputs, torch.float32)
    path, updates = write_lokr("ai-toolkit", tmp_path, tiny_config, seed=6)
    fp8_pipeline.load_lora_weights(str(path), adapter_name="detail")
    assert isinstance(transformer.transformer_blocks[0].attn.to_qkv, Fp8LoKrLinear)
    unfused = run(transformer, tiny_inputs, torch.float32)
    assert relative_error(unfused, reference(tiny_config, loaded, [(updates, 1.0)], tiny_inputs)) < TOLERANCE
    fp8_pipeline.fuse_lora()
    assert transformer.transformer_blocks[0].attn.to_qkv.get_base_layer().weight.dtype == torch.float8_e4m3fn
    fp8_pipeline.unfuse_lora()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), unfused)
    fp8_pipeline.unload_lora_weights()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


def test_load_loras_fuses_qkv_itself_on_a_model_diffusers_calls_quantized(tmp_path, tiny_base, tiny_config, tiny_inputs, int8_file):
    """diffusers will not fuse q/k/v of a model loaded through its quantizer (`is_quantized`); load_loras does, exactly."""
    from flux2_int8 import load_pipeline
    from flux2_int8.lora import load_loras

    pipeline = load_pipeline(tiny_base, transformer=int8_file[0], device="cpu", dtype=torch.bfloat16)
    pipeline.transformer.is_quantized = True  # as diffusers' from_pretrained marks a model its quantizer loaded
    path, updates = write_lokr("ai-toolkit", tmp_path, tiny_config, seed=4)
    with pytest.raises(ValueError, match="not possible with quantized weights"):
        pipeline.load_lora_weights(str(path))  # diffusers' own refusal, which load_loras avoids
    assert load_loras(pipeline, [path]) == ["lokr"]
    layer = pipeline.transformer.transformer_blocks[0].attn.to_qkv
    assert layer.lokr_w1["lokr"].dtype == layer.lokr_w2["lokr"].dtype == torch.bfloat16  # cast to the compute dtype
    # bfloat16 keeps 8 bits of mantissa: a few percent end to end (see test_adapters.py)
    assert relative_error(run(pipeline.transformer, tiny_inputs, torch.bfloat16), reference(tiny_config, int8_file[1], [(updates, 1.0)], tiny_inputs)) < 0.05
