"""The scorer reads drawn pictures back right, also blurred and noisy like a VAE's output."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from flux2_int8.nano.draw import draw_scene
from flux2_int8.nano.grammar import PALETTE, Scene, all_scenes
from flux2_int8.nano.score import accuracy, read_image, score_reading


def test_every_drawn_scene_reads_back_exactly() -> None:
    rng = np.random.default_rng(0)
    results = [score_reading(scene, read_image(draw_scene(scene, rng))) for scene in all_scenes()]
    assert accuracy(results) == {"background": 1.0, "colour": 1.0, "count": 1.0, "shape": 1.0, "all": 1.0}


def test_blurred_noisy_pictures_still_read_right() -> None:
    """A 1.5 px blur and noise of 12 grey levels: softer and noisier than a decoded nano picture."""
    rng = np.random.default_rng(1)
    scenes = all_scenes()[::7]
    results = []
    for scene in scenes:
        image = ndimage.gaussian_filter(draw_scene(scene, rng).astype(np.float32), sigma=(1.5, 1.5, 0))
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        results.append(score_reading(scene, read_image(image)))
    rates = accuracy(results)
    assert rates["background"] == rates["colour"] == rates["count"] == 1.0, rates


def test_wrong_pictures_score_wrong() -> None:
    rng = np.random.default_rng(2)
    asked = Scene("two", "red", "square", "blue")
    drawn = draw_scene(dataclasses.replace(asked, count_word="three", colour="green", background="white"), rng)
    assert score_reading(asked, read_image(drawn)) == {"background": False, "colour": False, "count": False, "shape": True}
    assert score_reading(asked, read_image(draw_scene(dataclasses.replace(asked, shape="circle"), rng)))["shape"] is False


def test_a_blank_picture_has_no_object() -> None:
    blank = np.full((128, 128, 3), PALETTE["yellow"], dtype=np.uint8)
    reading = read_image(blank)
    assert (reading.background, reading.colour, reading.count, reading.shape) == ("yellow", None, 0, None)
    assert accuracy([]) == {}
