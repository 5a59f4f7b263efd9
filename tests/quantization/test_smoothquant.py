"""SmoothQuant folded into the weights: same function, balanced ranges, a plain W8A8 file."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from quantize_helpers import quantize_json, transformer_output

from flux2_int8 import load_transformer
from flux2_int8.formats.inspect import describe
from flux2_int8.quantization.observers import InputAmaxObserver
from flux2_int8.channels import foldable_consumers, foldable_groups
from flux2_int8.quantization.smoothquant import apply_smoothquant, smoothing_factors
from flux2_int8.evaluate.metrics import relative_error


def observe(model, inputs, names, channels=()):  # type: ignore[no-untyped-def]
    with InputAmaxObserver(model, names, channels=channels) as observer, torch.no_grad():
        model(**inputs)
    return observer


def test_folding_keeps_the_function_and_balances_activation_and_weight_ranges(tiny_model, tiny_inputs):
    model = copy.deepcopy(tiny_model)
    consumers = foldable_consumers(model)
    assert len(consumers) == 2 * 4 + 2  # per double block: to_out.0, to_add_out, ff, ff_context; per single block: to_out
    channel_amax = observe(model, tiny_inputs, consumers, channels=consumers).channel_amax
    groups = foldable_groups(model)
    factors = [smoothing_factors(model, group, channel_amax, 0.5) for group in groups]
    with torch.no_grad():
        before = model(**tiny_inputs).sample
    ranges = apply_smoothquant(model, channel_amax, 0.5, set(consumers))
    with torch.no_grad():
        after = model(**tiny_inputs).sample
    assert relative_error(after, before) < 1e-5

    smoothed = observe(model, tiny_inputs, consumers, channels=consumers)
    for group, factor in zip(groups, factors, strict=True):
        activation = torch.stack([smoothed.channel_amax[n] for n in group.consumers]).amax(dim=0)
        weight = torch.stack([model.get_submodule(n).weight.abs().amax(dim=0) for n in group.consumers]).amax(dim=0)
        # alpha = 0.5: max|X_j / s_j| == max|W_j s_j| for every channel j of the group.
        torch.testing.assert_close(activation, weight, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(factor, torch.ones_like(factor))
    for name in consumers:  # the ranges computed from the per-channel maxima are the observed ones
        assert ranges[name] == pytest.approx(smoothed.amax[name], rel=1e-5)


def test_smoothquant_run_writes_a_plain_w8a8_file_that_stays_close_to_float(tmp_path, float_transformer, pipeline_inputs):
    report = quantize_json(tmp_path / "sq.safetensors", "--smoothquant", "0.5")
    summary = describe(report["path"])
    assert summary["format"] == "bfl-int8" and "pre_quant_scale" not in summary["scale_shapes"]
    assert json.loads(summary["metadata"]["quantization_recipe"])["smoothquant"]["alpha"] == 0.5
    amax, ranges = report["statistics"]["input_amax"], report["statistics"]["input_range"]
    assert ranges["transformer_blocks.0.ff.linear_out"] != amax["transformer_blocks.0.ff.linear_out"]  # smoothed
    assert ranges["transformer_blocks.0.ff.linear_in"] == amax["transformer_blocks.0.ff.linear_in"]  # AdaLN-fed: not smoothed
    loaded = load_transformer(report["path"], dtype=torch.float32)
    error = relative_error(transformer_output(loaded, pipeline_inputs), transformer_output(float_transformer, pipeline_inputs))
    assert error < 0.01, error
