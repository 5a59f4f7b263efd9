"""The recipe's layer choice and calibration spec, and the observers' bookkeeping."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

import flux2_int8
from flux2_int8.errors import Flux2Int8Error
from flux2_int8.quantization.export import quantized_linears
from flux2_int8.quantization.observers import AbsHistogram, InputAmaxObserver
from flux2_int8.quantization.recipe import Recipe, parse_calibration, unify_qkv


def test_keep_patterns_match_diffusers_and_bfl_names_and_keep_qkv_together(tiny_model):
    recipe = Recipe(extra_keep=("single_blocks.1.linear2", "transformer_blocks.0.attn.to_k"))
    kept = {name for name, m in tiny_model.named_modules() if isinstance(m, nn.Linear) and recipe.keeps(name)}
    assert "single_transformer_blocks.1.attn.to_out" in kept  # by its BFL name
    assert {"transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"} <= kept
    assert "transformer_blocks.0.attn.add_k_proj" not in kept and "transformer_blocks.1.attn.to_k" not in kept
    assert "double_stream_modulation_img.linear" in kept
    assert "double_stream_modulation_img.linear" in quantized_linears(tiny_model, Recipe(quantize_modulation=True))


def test_unify_qkv_gives_the_three_their_max():
    ranges = {"b.attn.to_q": 1.0, "b.attn.to_k": 3.0, "b.attn.to_v": 2.0, "b.attn.to_out.0": 5.0}
    assert unify_qkv(ranges) == {"b.attn.to_q": 3.0, "b.attn.to_k": 3.0, "b.attn.to_v": 3.0, "b.attn.to_out.0": 5.0}


@pytest.mark.parametrize(("spec", "percentile"), [("max", None), ("MAX", None), ("percentile:99.99", 99.99), ("percentile:100", 100.0)])
def test_calibration_specs(spec, percentile):
    assert parse_calibration(spec).percentile == percentile


@pytest.mark.parametrize("spec", ["median", "percentile", "percentile:0", "percentile:101", "percentile:abc", "max:1"])
def test_bad_calibration_specs_are_user_errors(spec):
    with pytest.raises(Flux2Int8Error, match="--calibration"):
        parse_calibration(spec)


def test_histogram_percentile_survives_range_doubling_and_stays_within_one_bin():
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(5000, generator=generator) * scale for scale in (0.01, 1.0, 40.0)]  # the range grows twice
    histogram = AbsHistogram(bins=1024)
    for batch in batches:
        histogram.add(batch)
    values = torch.cat(batches).abs().double()
    assert int(histogram.counts.sum()) == values.numel()
    width = histogram.upper / histogram.bins
    for percent in (50.0, 99.0, 99.99):
        exact = float(torch.quantile(values, percent / 100, interpolation="higher"))
        assert exact <= histogram.percentile(percent) <= exact + width
    assert histogram.percentile(100.0) == float(values.max())


def test_observer_pauses_and_keeps_per_channel_maxima():
    layer = nn.Sequential(nn.Linear(4, 2))
    observer = InputAmaxObserver(layer, ["0"], channels=["0"])
    with observer:
        layer(torch.tensor([[1.0, -2.0, 0.5, 0.0]]))
        with observer.paused():
            layer(torch.full((1, 4), 100.0))
        layer(torch.tensor([[-3.0, 1.0, 0.0, 0.25]]))
    layer(torch.full((1, 4), 100.0))  # after exit: hooks removed
    assert observer.amax == {"0": 3.0}
    assert observer.calls == {"0": 2}
    torch.testing.assert_close(observer.channel_amax["0"], torch.tensor([3.0, 2.0, 0.5, 0.25]))


def test_package_attribute_is_the_function_and_submodules_still_import():
    from flux2_int8.quantization import recipe
    from flux2_int8.quantization.api import quantize
    from flux2_int8.quantization.recipe import Recipe as RecipeClass

    assert flux2_int8.quantize is quantize and callable(flux2_int8.quantize)
    assert recipe.Recipe is RecipeClass
    assert importlib.import_module("flux2_int8.quantization.export").quantized_state_dict is not None
    assert "quantize" in flux2_int8.__all__ and "load_text_encoder" in flux2_int8.__all__


def test_the_default_calibration_is_percentile_where_it_was_measured_and_max_elsewhere():
    from flux2_int8.quantization.plan import resolve_calibration
    from flux2_int8.quantization.recipe import CalibrationMethod

    percentile, max_ = CalibrationMethod(99.99), CalibrationMethod()
    assert resolve_calibration(None, "static", None, None) == (percentile, max_)  # the text encoder keeps max
    assert resolve_calibration("auto", "static", None, None) == (percentile, max_)
    assert resolve_calibration(None, "static", 0.5, None) == (max_, max_)  # SmoothQuant needs max
    assert resolve_calibration(None, "static", None, 64) == (max_, max_)  # rotated: measured with max
    assert resolve_calibration(None, "dynamic", None, None)[1] == max_
    assert resolve_calibration("percentile:99.9", "static", None, None) == (CalibrationMethod(99.9),) * 2
    assert resolve_calibration("max", "static", None, None) == (max_, max_)
