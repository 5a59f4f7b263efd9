"""Fixtures for LoRA tests: INT8 / FP8 files of the tiny transformer, and pipelines around them."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_base():
    from flux2_int8.tiny import tiny_pipeline_cache

    return tiny_pipeline_cache()


@pytest.fixture(scope="session")
def int8_file(tmp_path_factory, tiny_model, tiny_amax):
    """(path, diffusers-named state) of the tiny transformer as a BFL INT8 file."""
    from flux2_int8.testing.checkpoints import int8_state, write_bfl

    state = int8_state(tiny_model, tiny_amax, "[N]", "0-d")
    return write_bfl(tmp_path_factory.mktemp("int8") / "int8.safetensors", state), state


@pytest.fixture(scope="session")
def fp8_file(tmp_path_factory, tiny_model, tiny_amax):
    from flux2_int8.quantization.export import fp8_state_dict as fp8_state
    from flux2_int8.testing.checkpoints import write_bfl

    state = fp8_state(tiny_model, tiny_amax)
    return write_bfl(tmp_path_factory.mktemp("fp8") / "fp8.safetensors", state), state


def _pipeline(base, path):
    from flux2_int8 import load_pipeline

    pipeline = load_pipeline(base, transformer=path, device="cpu", dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture
def int8_pipeline(tiny_base, int8_file):
    """A fresh float32-compute INT8 pipeline per test: adapters added by one test never leak into another."""
    return _pipeline(tiny_base, int8_file[0])


@pytest.fixture
def fp8_pipeline(tiny_base, fp8_file):
    return _pipeline(tiny_base, fp8_file[0])
