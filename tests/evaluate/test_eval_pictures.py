"""Difference maps: one gain per case, the largest that keeps the 99th-percentile difference visible but unclipped."""

from __future__ import annotations

import numpy as np
from PIL import Image

from flux2_int8.evaluate.pictures import pick_gain, write_case_maps


def _levels(value: int, size: int = 100) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def test_gain_is_the_largest_power_of_two_that_fits_the_99th_percentile():
    assert pick_gain([_levels(2)]) == 64  # 45 dB-like differences: the highest gain
    assert pick_gain([_levels(20)]) == 8  # 22 dB-like: 20 x 8 = 160 fits, x 16 = 320 would clip
    assert pick_gain([_levels(200)]) == 1
    assert pick_gain([_levels(2), _levels(20)]) == 8  # shared by every candidate of a case


def test_a_few_outlier_pixels_do_not_decide_the_gain():
    difference = _levels(3)
    difference[0, :5] = 255  # 5 of 10,000 pixels: under the 1% the percentile ignores
    assert pick_gain([difference]) == 64


def test_case_maps_share_one_gain_and_are_written_beside_the_images(tmp_path):
    base = np.zeros((8, 8, 3), dtype=np.uint8) + 100
    images = {"bf16": base, "int8": base + 2, "fp8": base + 10}
    paths = {}
    for model, pixels in images.items():
        paths[model] = f"images/{model}/c-s1.png"
        (tmp_path / paths[model]).parent.mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / paths[model])
    gain, maps = write_case_maps(tmp_path, "bf16", paths)
    assert gain == 16 and maps == {"int8": "differences/int8/c-s1.png", "fp8": "differences/fp8/c-s1.png"}
    assert np.asarray(Image.open(tmp_path / maps["int8"])).max() == 32
    assert np.asarray(Image.open(tmp_path / maps["fp8"])).max() == 160
