"""Fixtures for generation tests: the tiny pipeline in BF16 and INT8, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SIZE = 64
STEPS = 2


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    from flux2_int8.tiny import tiny_pipeline_cache

    return tiny_pipeline_cache()


@pytest.fixture(scope="session")
def reference_files(tmp_path_factory) -> tuple[Path, Path]:
    """Two drawn 64x64 reference PNGs."""
    from flux2_int8.demo import draw_references

    folder = tmp_path_factory.mktemp("references")
    paths = (folder / "square.png", folder / "circle.png")
    for path, image in zip(paths, draw_references(SIZE)):
        image.save(path)
    return paths


@pytest.fixture(scope="session")
def bf16_pipeline(tiny_base):
    from flux2_int8 import load_pipeline

    pipeline = load_pipeline(tiny_base, device="cpu", dtype=torch.bfloat16)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def int8_files(tiny_base, tmp_path_factory):
    """The tiny transformer and text encoder quantized to INT8 W8A8 by `flux2_int8.quantize`."""
    from flux2_int8 import quantize

    out = tmp_path_factory.mktemp("int8") / "tiny-int8.safetensors"
    return quantize(tiny_base, out, samples=4, resolution=SIZE, text_encoder=True, device="cpu", progress=False)


@pytest.fixture(scope="session")
def int8_checkpoint(int8_files) -> Path:
    return int8_files.path


@pytest.fixture(scope="session")
def int8_text_encoder(int8_files) -> Path:
    return int8_files.text_encoder_path


@pytest.fixture(scope="session")
def int8_pipeline(tiny_base, int8_checkpoint):
    from flux2_int8 import load_pipeline

    pipeline = load_pipeline(tiny_base, transformer=int8_checkpoint, device="cpu", dtype=torch.bfloat16)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def sparse_9b_checkpoint(tmp_path_factory) -> Path:
    """A real-size klein 9B INT8 file that is only a header (its data is a hole): shapes, no memory."""
    from flux2_int8.formats.keys import diffusers_to_bfl
    from flux2_int8.loading.skeleton import build_empty_model
    from flux2_int8.testing.checkpoints import meta_int8_state, write_sparse_header
    from flux2_int8.variants import get_variant

    model = build_empty_model(get_variant("klein-9b").architecture.transformer_config())
    path = tmp_path_factory.mktemp("sparse") / "klein-9b-int8.safetensors"
    return write_sparse_header(path, diffusers_to_bfl(meta_int8_state(model)), {"format": "bfl-int8"})
