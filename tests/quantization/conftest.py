"""Shared quantize runs on the tiny pipeline: each is made once per session and read by many tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from quantize_helpers import quantize_json


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    from flux2_int8.tiny import tiny_pipeline_cache

    return tiny_pipeline_cache()


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> dict:
    """The default recipe: modulation kept, max calibration, BFL file."""
    return quantize_json(tmp_path_factory.mktemp("default") / "q.safetensors")


@pytest.fixture(scope="session")
def modulation_run(tmp_path_factory) -> dict:
    return quantize_json(tmp_path_factory.mktemp("modulation") / "q.safetensors", "--quantize-modulation")


@pytest.fixture(scope="session")
def float_transformer(tiny_base):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel.from_pretrained(tiny_base / "transformer", dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def float_pipeline(tiny_base):
    from diffusers import Flux2KleinPipeline

    pipe = Flux2KleinPipeline.from_pretrained(tiny_base, dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def pipeline_inputs(float_pipeline) -> list[dict]:
    """The transformer's keyword inputs over one edit generation (2 steps), as the pipeline makes them."""
    from PIL import Image

    captured: list[dict] = []
    handle = float_pipeline.transformer.register_forward_pre_hook(lambda _m, _a, kwargs: captured.append(dict(kwargs)), with_kwargs=True)
    try:
        reference = Image.new("RGB", (64, 64), (200, 80, 40))
        float_pipeline(reference, prompt="Make the cube blue.", height=64, width=64, num_inference_steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(3), output_type="latent")
    finally:
        handle.remove()
    return captured
