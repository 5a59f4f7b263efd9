"""Calibration: the recorded ranges are the true maxima / percentiles of what the linears saw."""

from __future__ import annotations

import torch

from flux2_int8.quantization.calibrate import make_schedule, run_calibration
from flux2_int8.quantization.export import quantized_linears
from flux2_int8.quantization.observers import InputAmaxObserver
from flux2_int8.quantization.prompts import draw_samples, load_prompts
from flux2_int8.quantization.recipe import Recipe

# One linear of each kind: q (image stream), text-stream output, MLP down projection, single-block fused input.
WATCHED = ("transformer_blocks.0.attn.to_q", "transformer_blocks.1.attn.to_add_out", "transformer_blocks.0.ff.linear_out", "single_transformer_blocks.1.attn.to_qkv_mlp_proj")


def capture_inputs(model, names, observer: InputAmaxObserver):  # type: ignore[no-untyped-def]
    """Keep a copy of every input of the named linears while `observer` records (the brute-force record)."""
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def keep(name: str, x: torch.Tensor) -> None:
        if observer.recording:
            captured[name].append(x.detach().clone())

    handles = [model.get_submodule(name).register_forward_pre_hook(lambda _m, args, name=name: keep(name, args[0])) for name in names]
    return captured, handles


def calibrate_tiny(pipe, histogram_bins: int = 0) -> tuple[InputAmaxObserver, dict[str, list[torch.Tensor]]]:  # type: ignore[no-untyped-def]
    """The default run's calibration (3 samples, seed 0, 2 of 4 steps, 64 px), with brute-force capture beside it."""
    prompts = load_prompts()
    targets = quantized_linears(pipe.transformer, Recipe())
    observer = InputAmaxObserver(pipe.transformer, targets, histogram_bins=histogram_bins)
    captured, handles = capture_inputs(pipe.transformer, WATCHED, observer)
    try:
        run_calibration(pipe, draw_samples(prompts, 3, 0), prompts, make_schedule(4, 1.0, 2), 64, 0, [observer], progress=False)
    finally:
        for handle in handles:
            handle.remove()
    return observer, captured


def test_recorded_amax_equals_brute_force_max_over_the_same_inputs(float_pipeline, default_run):
    observer, captured = calibrate_tiny(float_pipeline, histogram_bins=64)
    for name in WATCHED:
        assert len(captured[name]) == 6  # 3 samples x 2 steps; reference images are not observed
        brute_force = float(max(x.abs().max() for x in captured[name]))
        assert observer.amax[name] == brute_force
        # The CLI run with the same settings recorded the very same maxima.
        assert default_run["statistics"]["input_amax"][name] == brute_force
    assert default_run["statistics"]["transformer_calls"] == 6


def test_percentile_is_the_quantile_of_the_observed_inputs_within_one_bin(float_pipeline):
    observer, captured = calibrate_tiny(float_pipeline, histogram_bins=2048)
    for name in WATCHED:
        values = torch.cat([x.abs().reshape(-1) for x in captured[name]]).double()
        histogram = observer.histograms[name]
        bin_width = histogram.upper / histogram.bins
        for percent in (90.0, 99.0, 99.9):
            recorded = observer.percentile(percent)[name]
            exact = float(torch.quantile(values, percent / 100, interpolation="higher"))
            assert exact - 1e-6 <= recorded <= exact + bin_width + 1e-6, (name, percent, recorded, exact, bin_width)
            assert float((values <= recorded).double().mean()) >= percent / 100
        assert observer.percentile(100.0)[name] == observer.amax[name]


def test_base_model_visits_a_subset_of_its_50_steps_with_cfg(tmp_path):
    from flux2_int8.generate import load_pipeline
    from flux2_int8.tiny import tiny_pipeline_cache

    pipe = load_pipeline(tiny_pipeline_cache(distilled=False), device="cpu", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    prompts = load_prompts()
    sample = draw_samples(prompts, 1, 0)
    timesteps: list[float] = []
    hook = pipe.transformer.register_forward_pre_hook(lambda _m, _a, kwargs: timesteps.append(float(kwargs["timestep"][0])), with_kwargs=True)
    try:
        run_calibration(pipe, sample, prompts, make_schedule(50, 4.0, 50), 64, 0, [], progress=False)
        full = sorted(set(timesteps))
        timesteps.clear()
        observer = InputAmaxObserver(pipe.transformer, ["transformer_blocks.0.attn.to_q"])
        run_calibration(pipe, sample, prompts, make_schedule(50, 4.0, 5), 64, 0, [observer], progress=False)
    finally:
        hook.remove()
    assert len(full) == 50
    assert observer.calls["transformer_blocks.0.attn.to_q"] == 5 * 2  # 5 steps, each conditional + unconditional
    assert len(set(timesteps)) == 5 and set(timesteps) <= set(full)
    assert max(timesteps) == max(full) and min(timesteps) == min(full)  # from pure noise to the last step


def test_steps_outside_the_schedule_are_refused():
    import pytest

    from flux2_int8.errors import Flux2Int8Error

    assert make_schedule(4, 1.0, None).steps == 4
    assert make_schedule(4, 1.0, 4).sigmas() is None
    assert make_schedule(50, 4.0, 2).sigmas() == [1.0, 1 / 50]
    for steps in (0, 5):
        with pytest.raises(Flux2Int8Error, match="--steps"):
            make_schedule(4, 1.0, steps)


def test_percentile_run_writes_ranges_below_the_max(tmp_path):
    import json

    from quantize_helpers import quantize_json

    from flux2_int8.formats.inspect import describe

    report = quantize_json(tmp_path / "p.safetensors", "--calibration", "percentile:99")
    amax, ranges = report["statistics"]["input_amax"], report["statistics"]["input_range"]
    assert all(0 < ranges[name] <= amax[name] for name in ranges)
    assert sum(ranges[name] < amax[name] for name in ranges) > len(ranges) // 2
    assert json.loads(describe(report["path"])["metadata"]["quantization_recipe"])["method"] == "percentile:99"
