"""`generate_images`: several images in one pipeline call, each bitwise the one `generate_image` makes alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from flux2_int8.generate import generate_image, generate_images

PROMPTS = ["two red circles on a blue background", "one green square on a white background", "three yellow triangles on a black background"]


@pytest.fixture(scope="module")
def nano():
    from flux2_int8 import load_pipeline

    pipeline = load_pipeline("nano", device="cpu", dtype=torch.bfloat16)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_a_batch_is_bitwise_the_images_made_alone(nano):
    batch = generate_images(nano, PROMPTS, [11, 12, 13], steps=2, width=128, height=128)
    alone = [generate_image(nano, prompt, [], seed, 2, 1.0, 128, 128) for prompt, seed in zip(PROMPTS, [11, 12, 13])]
    for made, single in zip(batch, alone):
        assert np.array_equal(np.asarray(made), np.asarray(single))
    assert nano.vae.use_slicing is False  # the sliced decode is put back


def test_an_edit_batch_shares_its_references(nano):
    reference = Image.new("RGB", (128, 128), (200, 40, 40))
    batch = generate_images(nano, PROMPTS[:2], [1, 2], [reference], steps=2)
    alone = [generate_image(nano, prompt, [reference], seed, 2, 1.0) for prompt, seed in zip(PROMPTS[:2], [1, 2])]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(batch, alone))


def test_seeds_and_prompts_must_pair_up(nano):
    with pytest.raises(ValueError, match="as many seeds as prompts"):
        generate_images(nano, PROMPTS, [1])
