"""The --random-weights path (transformer only and --full-pipeline), at a scaled-down size on CPU.

The full-size path runs only on a GPU; here the variant's architecture, text encoder
and VAE are swapped for small ones so the same code runs end to end in seconds.
"""

from __future__ import annotations

import pytest
from transformers import Qwen3Config

from flux2_int8.bench import pipeline_bench, random_pipeline
from flux2_int8.bench.pipeline_bench import BenchSettings, run_benchmark
from flux2_int8.bench.random_weights import random_vae
from flux2_int8.tiny import TINY_TEXT_ENCODER_CONFIG, TINY_VAE_CONFIG
from flux2_int8.variants import Architecture, Variant

SMALL = Architecture("small", num_layers=1, num_single_layers=1, num_attention_heads=1, joint_attention_dim=96, in_channels=32, timestep_guidance_channels=32)


@pytest.fixture
def small_klein(monkeypatch):
    """'klein-9b' built at a small size: tiny Qwen3 (hidden 32 = 96 / 3) and tiny VAE (8 latent channels x 4 = 32)."""
    monkeypatch.setattr(pipeline_bench, "get_variant", lambda name: Variant(name, SMALL, "none", distilled=True))
    monkeypatch.setattr(random_pipeline, "qwen3_config_for", lambda arch: Qwen3Config(**TINY_TEXT_ENCODER_CONFIG))
    monkeypatch.setattr(random_pipeline, "random_vae", lambda device, dtype, seed: random_vae(device, dtype, seed, config=TINY_VAE_CONFIG))


def test_full_pipeline_times_every_phase(small_klein):
    settings = BenchSettings(variant="klein-9b", formats=("bf16", "int8", "fp8"), compile_modes=("off",), resolution=64, repeats=1, warmup=0, random_weights=True, full_pipeline=True, device="cpu")
    result = run_benchmark(settings)
    assert [run.format for run in result.runs] == ["bf16", "int8", "fp8"]
    assert result.components_load_s > 0 and "random klein-9b" in result.source
    for run in result.runs:
        assert run.image.measured and run.image.text_encoding.median_s > 0 and run.image.vae_decode.median_s > 0
        assert run.images_per_s == pytest.approx(1 / run.image.total.median_s)


def test_transformer_only_estimates_image_latency_from_steps(small_klein):
    settings = BenchSettings(variant="klein-9b", formats=("int8",), compile_modes=("off",), resolution=64, steps=3, repeats=2, random_weights=True, device="cpu")
    result = run_benchmark(settings)
    (run,) = result.runs
    assert result.components_load_s is None
    assert not run.image.measured and run.image.text_encoding is None
    assert run.image.total.median_s == pytest.approx(3 * run.step.median_s)
    assert run.images_per_s == pytest.approx(1 / (3 * run.step.median_s))


def test_compiled_run_compiles_once_for_steps_and_pipeline(small_klein):
    """The step inputs match the pipeline's calls exactly, so the compiled transformer is never recompiled."""
    from torch._dynamo.utils import counters

    settings = BenchSettings(variant="klein-9b", formats=("int8",), compile_modes=("full",), resolution=64, repeats=1, warmup=0, random_weights=True, full_pipeline=True, device="cpu")
    graphs_before = counters["stats"]["unique_graphs"]
    (run,) = run_benchmark(settings).runs
    assert run.compiled and run.image.measured
    assert counters["stats"]["unique_graphs"] - graphs_before == 1
    assert run.first_call_s > run.step.median_s  # the first call paid for compilation


def test_transformer_file_is_timed_in_its_own_format(monkeypatch, tmp_path):
    """--transformer PATH: the file's format (read from its header) replaces --formats."""
    from flux2_int8.loading import load_transformer
    from flux2_int8.tiny import tiny_pipeline_cache

    path = pipeline_bench.write_tiny_quantized(tiny_pipeline_cache(), "int8", tmp_path / "tiny-int8.safetensors")
    # The tiny file fits no klein size: load it with the config its shapes give.
    monkeypatch.setattr(pipeline_bench, "load_transformer", lambda path, config, device, dtype, activations: load_transformer(path, device=device, dtype=dtype, activations=activations))
    settings = BenchSettings(variant="klein-4b", formats=("bf16", "fp8"), compile_modes=("off",), resolution=64, repeats=1, transformer_path=str(path), device="cpu")
    result = run_benchmark(settings)
    assert [run.format for run in result.runs] == ["bfl-int8"]
    assert str(path) in result.source and not result.runs[0].image.measured
