"""Every LoRA layout, loaded with diffusers' own `pipe.load_lora_weights` on an INT8 pipeline,
matches a float64 reference: the fake-quantized INT8 base plus float LoRA branches on the raw input.

Tolerance 1e-4 relative: the pipeline computes in float32 (rounding ~1e-7 per op) against
float64; a float32 / float64 difference can also move an activation across an int8
rounding boundary, one step of one element, which the existing loader tests bound the same way.
"""

from __future__ import annotations

import pytest
import torch

from flux2_int8.lora import Fp8LoraLinear, Int8LoraLinear
from flux2_int8.evaluate.metrics import relative_error

from lora_helpers import draw_lora, expected_updates, reference_transformer, run, write_lora

TOLERANCE = 1e-4


@pytest.mark.parametrize("layout", ["diffusers", "kohya", "ai-toolkit"])
def test_layout_matches_float64_reference(tmp_path, tiny_config, tiny_inputs, int8_file, int8_pipeline, layout):
    lora = draw_lora(tiny_config, rank=4, alpha=8.0)
    path, with_alpha = write_lora(layout, tmp_path, lora)
    int8_pipeline.load_lora_weights(str(path), adapter_name="style")
    transformer = int8_pipeline.transformer
    assert isinstance(transformer.transformer_blocks[0].attn.to_q, Int8LoraLinear)
    expected = run(reference_transformer(tiny_config, int8_file[1], [(expected_updates(lora, with_alpha), 1.0)]), tiny_inputs, torch.float64)
    base = run(reference_transformer(tiny_config, int8_file[1], []), tiny_inputs, torch.float64)
    assert relative_error(expected, base) > 100 * TOLERANCE  # the LoRA changes the output far more than the tolerance
    assert relative_error(run(transformer, tiny_inputs, torch.float32), expected) < TOLERANCE


def test_fp8_layers_take_loras_too(tmp_path, tiny_config, tiny_inputs, fp8_pipeline):
    # The BFL FP8 file re-scales q/k/v to one per-tensor scale when fusing them, so the
    # reference starts from the layers as loaded (the loader's fidelity is tested in tests/loading).
    loaded = {key: value.clone() for key, value in fp8_pipeline.transformer.state_dict().items()}
    lora = draw_lora(tiny_config)
    path, with_alpha = write_lora("ai-toolkit", tmp_path, lora)
    fp8_pipeline.load_lora_weights(str(path))
    assert isinstance(fp8_pipeline.transformer.transformer_blocks[0].attn.to_q, Fp8LoraLinear)
    expected = run(reference_transformer(tiny_config, loaded, [(expected_updates(lora, with_alpha), 1.0)]), tiny_inputs, torch.float64)
    assert relative_error(run(fp8_pipeline.transformer, tiny_inputs, torch.float32), expected) < TOLERANCE
