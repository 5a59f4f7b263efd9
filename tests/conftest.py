"""Shared fixtures: the tiny transformer in float32, its inputs and calibrated ranges."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The tiny models are far too small for two threads to help; one avoids oversubscribing CI's two cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG

    return dict(TINY_TRANSFORMER_CONFIG)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(0)
    return Flux2Transformer2DModel.from_config(tiny_config).float().eval()


@pytest.fixture(scope="session")
def tiny_inputs(tiny_config) -> dict:
    from flux2_int8.tiny import random_transformer_inputs

    return random_transformer_inputs(tiny_config)


@pytest.fixture(scope="session")
def tiny_amax(tiny_model, tiny_inputs) -> dict:
    from flux2_int8.quantization.one_forward import one_forward_amax

    return one_forward_amax(tiny_model, tiny_inputs)
