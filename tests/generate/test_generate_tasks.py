"""The three tasks from the Python API, in BF16 and INT8: same seed gives close images.

Measured on the tiny model (64x64, 2 steps, one thread, INT8 from `flux2_int8.quantize`
on 4 calibration samples): PSNR INT8 vs BF16 43.9-45.7 dB over seeds 0-4 and the three
tasks; the transformer's velocity differs by 0.30-0.38 % (relative L2) while another
prompt moves it by 1.5-2.0 %. The bounds below leave margin.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from flux2_int8.demo import psnr
from flux2_int8.generate import generate_image
from flux2_int8.evaluate.metrics import relative_error

SIZE, STEPS = 64, 2
MIN_PSNR_DB = 40.0
MAX_VELOCITY_ERROR = 0.01
TASKS = {"text-to-image": 0, "edit": 1, "composition": 2}


def references_for(task: str, reference_files) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in reference_files[: TASKS[task]]]


@pytest.mark.parametrize("task", TASKS)
def test_int8_image_is_close_to_bf16_with_the_same_seed(task, bf16_pipeline, int8_pipeline, reference_files):
    references = references_for(task, reference_files)
    bf16 = generate_image(bf16_pipeline, "A red cube on a blue table", references, 3, STEPS, 1.0, SIZE, SIZE)
    int8 = generate_image(int8_pipeline, "A red cube on a blue table", references, 3, STEPS, 1.0, SIZE, SIZE)
    other_seed = generate_image(bf16_pipeline, "A red cube on a blue table", references, 4, STEPS, 1.0, SIZE, SIZE)
    assert bf16.size == int8.size == (SIZE, SIZE)
    assert MIN_PSNR_DB < psnr(bf16, int8) < float("inf")  # close, yet really computed in INT8
    assert psnr(bf16, other_seed) < 25.0


def test_same_seed_repeats_exactly_and_references_change_the_image(bf16_pipeline, reference_files):
    square, circle = (Image.open(p).convert("RGB") for p in reference_files)
    first = generate_image(bf16_pipeline, "A red cube", [square], 0, STEPS, 1.0, SIZE, SIZE)
    again = generate_image(bf16_pipeline, "A red cube", [square], 0, STEPS, 1.0, SIZE, SIZE)
    other_reference = generate_image(bf16_pipeline, "A red cube", [circle], 0, STEPS, 1.0, SIZE, SIZE)
    composed = generate_image(bf16_pipeline, "A red cube", [square, circle], 0, STEPS, 1.0, SIZE, SIZE)
    assert psnr(first, again) == float("inf")
    assert psnr(first, other_reference) < float("inf") and psnr(first, composed) < float("inf")


def test_int8_transformer_error_is_small_next_to_the_prompt_effect(bf16_pipeline, int8_pipeline):
    """The image PSNR is dominated by the shared noise; the transformer's output tells INT8 error apart."""
    velocities: dict[str, list[torch.Tensor]] = {"bf16": [], "int8": []}
    hooks = [
        pipeline.transformer.register_forward_hook(lambda m, a, out, name=name: velocities[name].append(out[0].float()))
        for name, pipeline in (("bf16", bf16_pipeline), ("int8", int8_pipeline))
    ]
    try:
        for pipeline in (bf16_pipeline, int8_pipeline):
            generate_image(pipeline, "A red cube", [], 0, 1, 1.0, SIZE, SIZE)
        generate_image(bf16_pipeline, "A blue ball on green grass", [], 0, 1, 1.0, SIZE, SIZE)
    finally:
        for hook in hooks:
            hook.remove()
    (bf16, other_prompt), (int8,) = velocities["bf16"], velocities["int8"]
    int8_error = relative_error(int8, bf16)
    assert 0 < int8_error < MAX_VELOCITY_ERROR
    assert int8_error < 0.5 * relative_error(other_prompt, bf16)
