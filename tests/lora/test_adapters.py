"""diffusers' adapter API on an INT8 pipeline: several adapters, weights, disable/enable, unload."""

from __future__ import annotations

import torch
from lora_helpers import draw_lora, expected_updates, reference_transformer, run, write_lora

from flux2_int8 import Int8Linear
from flux2_int8.evaluate.metrics import relative_error

TOLERANCE = 1e-4  # float32 pipeline vs float64 reference (see test_layouts.py)


def _snapshot(transformer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in transformer.state_dict().items()}


def test_two_adapters_with_weights_then_disable_enable_unload(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline):
    transformer = int8_pipeline.transformer
    before_state, before = _snapshot(transformer), run(transformer, tiny_inputs, torch.float32)
    first, second = draw_lora(tiny_config, seed=1), draw_lora(tiny_config, rank=8, alpha=4.0, seed=2)
    first_path, first_alpha = write_lora("kohya", tmp_path, first, name="first")
    second_path, second_alpha = write_lora("ai-toolkit", tmp_path, second, name="second")
    int8_pipeline.load_lora_weights(str(first_path), adapter_name="first")
    int8_pipeline.load_lora_weights(str(second_path), adapter_name="second")
    int8_pipeline.set_adapters(["first", "second"], adapter_weights=[0.5, 1.5])
    adapters = [(expected_updates(first, first_alpha), 0.5), (expected_updates(second, second_alpha), 1.5)]
    expected = run(reference_transformer(tiny_config, int8_file[1], adapters), tiny_inputs, torch.float64)
    both = run(transformer, tiny_inputs, torch.float32)
    assert relative_error(both, expected) < TOLERANCE

    int8_pipeline.set_adapters("second", adapter_weights=0.25)
    expected = run(reference_transformer(tiny_config, int8_file[1], [(expected_updates(second, second_alpha), 0.25)]), tiny_inputs, torch.float64)
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE

    int8_pipeline.disable_lora()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)
    int8_pipeline.enable_lora()
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE

    int8_pipeline.unload_lora_weights()
    assert isinstance(transformer.transformer_blocks[0].attn.to_q, Int8Linear)
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)
    after = transformer.state_dict()
    assert after.keys() == before_state.keys() and all(torch.equal(after[key], value) for key, value in before_state.items())


def test_transformer_level_load_lora_adapter_and_unload_lora(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline):
    transformer = int8_pipeline.transformer
    before = run(transformer, tiny_inputs, torch.float32)
    lora = draw_lora(tiny_config, seed=3)
    path, with_alpha = write_lora("diffusers", tmp_path, lora)
    # use_safetensors=True: without it diffusers reads the file through its non-safetensors path and
    # drops the PEFT config in the header (alpha), on any model.
    transformer.load_lora_adapter(str(path), prefix="transformer", adapter_name="style", use_safetensors=True)
    expected = run(reference_transformer(tiny_config, int8_file[1], [(expected_updates(lora, with_alpha), 1.0)]), tiny_inputs, torch.float64)
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE
    transformer.unload_lora()
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


def test_bfloat16_pipeline_runs_the_branch_in_bfloat16(tmp_path, tiny_base, tiny_config, tiny_inputs, int8_file):
    from flux2_int8 import load_pipeline
    from flux2_int8.lora import load_loras

    pipeline = load_pipeline(tiny_base, transformer=int8_file[0], device="cpu", dtype=torch.bfloat16)
    lora = draw_lora(tiny_config, seed=4)
    path, with_alpha = write_lora("kohya", tmp_path, lora)
    load_loras(pipeline, [path])  # the file is float32: load_loras casts the adapters to the compute dtype
    layer = pipeline.transformer.transformer_blocks[0].attn.to_q
    assert all(factors[name].weight.dtype == torch.bfloat16 for factors in (layer.lora_A, layer.lora_B) for name in factors)
    expected = run(reference_transformer(tiny_config, int8_file[1], [(expected_updates(lora, with_alpha), 1.0)]), tiny_inputs, torch.float64)
    # bfloat16 keeps 8 bits of mantissa: 2**-8 relative rounding per op, a few percent end to end.
    assert relative_error(run(pipeline.transformer, tiny_inputs, torch.bfloat16), expected) < 0.05


def test_hotswap_replaces_values_and_scale_in_place(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline):
    """PEFT's hotswap writes new factors and scale into the existing layers (what keeps a compiled model compiled)."""
    first, second = draw_lora(tiny_config, rank=4, alpha=8.0, seed=12), draw_lora(tiny_config, rank=4, alpha=2.0, seed=13)
    first_path, _ = write_lora("diffusers", tmp_path, first, name="first")
    second_path, with_alpha = write_lora("diffusers", tmp_path, second, name="second")
    int8_pipeline.load_lora_weights(str(first_path), adapter_name="style", use_safetensors=True)
    layer = int8_pipeline.transformer.transformer_blocks[0].attn.to_q
    scale_tensor = layer.lora_scale_tensor["style"]
    int8_pipeline.load_lora_weights(str(second_path), adapter_name="style", hotswap=True, use_safetensors=True)
    assert layer.lora_scale_tensor["style"] is scale_tensor and float(scale_tensor) == 0.5  # alpha 2 / rank 4
    expected = run(reference_transformer(tiny_config, int8_file[1], [(expected_updates(second, with_alpha), 1.0)]), tiny_inputs, torch.float64)
    assert relative_error(run(int8_pipeline.transformer, tiny_inputs, torch.float32), expected) < TOLERANCE
