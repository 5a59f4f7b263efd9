"""Fixtures for evaluation tests: the tiny pipeline, two INT8 recipes of its transformer, a 3-case
suite, and tiny random metric networks (no weights can be downloaded where the tests run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_helpers import HAS_LPIPS, HAS_TORCHMETRICS, SIZE, STEPS, TinyFeatures, build_tiny_clip, build_tiny_lpips


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    from flux2_int8.tiny import tiny_pipeline_cache

    return tiny_pipeline_cache()


@pytest.fixture(scope="session")
def int8_recipes(tiny_base, tmp_path_factory) -> dict[str, Path]:
    """The tiny transformer as INT8 BFL files: the default recipe, and one that also quantizes modulation."""
    from diffusers import Flux2Transformer2DModel

    from flux2_int8.quantization.recipe import Recipe
    from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG
    from flux2_int8.testing.checkpoints import int8_state, write_bfl
    from flux2_int8.quantization.one_forward import one_forward_amax
    from flux2_int8.tiny import random_transformer_inputs

    model = Flux2Transformer2DModel.from_pretrained(tiny_base / "transformer").float().eval()
    amax = one_forward_amax(model, random_transformer_inputs(TINY_TRANSFORMER_CONFIG))
    folder = tmp_path_factory.mktemp("candidates")
    return {
        "int8": write_bfl(folder / "int8.safetensors", int8_state(model, amax)),
        "int8mod": write_bfl(folder / "int8-modulation.safetensors", int8_state(model, amax, recipe=Recipe(quantize_modulation=True))),
    }


@pytest.fixture(scope="session")
def tiny_suite():
    """Two text-to-image cases (so a task has an FID), an edit and a composition, with generated inputs."""
    from flux2_int8.evaluate import Case, Suite

    return Suite(
        "tiny",
        (
            Case("t2i-cube", "A red cube on a blue table", 11),
            Case("t2i-cat", "A green cat on a sofa", 14),
            Case("edit-car", "Make the car yellow", 12, input_prompts=("A red car in a garage",)),
            Case("composition-cat", "Put the cat on the sofa", 13, input_prompts=("A cat", "A green sofa")),
        ),
    )


@pytest.fixture(scope="session")
def sampling(tiny_base):
    from flux2_int8.evaluate import RunSettings

    return RunSettings(str(tiny_base), width=SIZE, height=SIZE, dtype="float32", steps=STEPS)


@pytest.fixture(scope="session")
def tiny_networks():
    """Every metric network, tiny and random: CLIP, LPIPS (when lpips is installed) and Inception."""
    from flux2_int8.evaluate import InceptionFeatures, MetricModels

    return MetricModels(
        clip=build_tiny_clip(),
        lpips=build_tiny_lpips() if HAS_LPIPS else None,
        inception=InceptionFeatures(TinyFeatures(), "tiny pooled features") if HAS_TORCHMETRICS else None,
    )
