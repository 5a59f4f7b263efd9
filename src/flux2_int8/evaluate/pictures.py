"""Difference maps: |candidate - reference| per pixel, amplified so the eye sees where two images differ.

One gain per case, shared by every candidate of the case, so their maps compare at a
glance. It is the largest power of two (1 to 64) that keeps the 99th percentile of
the case's differences within 255: INT8 against BF16 at 22 dB PSNR differs by tens
of levels (gain 2 or 4), a tiny model at 45 dB by one or two (gain 64). The gain is
printed under each map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..generate import write_png

GAINS = (1, 2, 4, 8, 16, 32, 64)
DIFFERENCES = "differences"  # the folder of the maps inside an evaluation folder
_PERCENTILE = 99.0


def absolute_difference(a: Image.Image, b: Image.Image) -> np.ndarray:
    """|a - b| per RGB channel, uint8 [H, W, 3]; both images must have one size."""
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    return np.abs(x - y).astype(np.uint8)


def difference_image(a: Image.Image, b: Image.Image, gain: int) -> Image.Image:
    """|a - b| times `gain`, clipped to 255 (black: identical)."""
    return amplify(absolute_difference(a, b), gain)


def amplify(difference: np.ndarray, gain: int) -> Image.Image:
    return Image.fromarray(np.clip(difference.astype(np.int32) * gain, 0, 255).astype(np.uint8))


def pick_gain(differences: Sequence[np.ndarray]) -> int:
    """The largest gain of GAINS whose amplified 99th-percentile difference still fits in 255."""
    if not differences:
        return GAINS[-1]
    level = max(float(np.percentile(d, _PERCENTILE)) for d in differences)
    fitting = [gain for gain in GAINS if gain * level <= 255]
    return fitting[-1] if fitting else GAINS[0]


def write_case_maps(root: Path, reference: str, images: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Write every candidate's map of one case into `root/differences/<model>/`; returns the gain and model -> path (relative to root).

    `images` maps a model to its image path relative to `root` (the metrics document's
    `cases[i].images`), the reference included.
    """
    with Image.open(root / images[reference]) as opened:
        base = opened.convert("RGB")
    differences = {}
    for model, relative in images.items():
        if model != reference:
            with Image.open(root / relative) as opened:
                differences[model] = absolute_difference(opened, base)
    gain = pick_gain(list(differences.values()))
    written = {}
    for model, difference in differences.items():
        relative = Path(DIFFERENCES) / model / Path(images[model]).name
        write_png(root / relative, amplify(difference, gain), {"description": f"|{model} - {reference}| x {gain}"})
        written[model] = relative.as_posix()
    return gain, written


def add_difference_maps(document: dict[str, Any], root: Path) -> None:
    """Write every case's maps and record them in the metrics document (`differences`, `difference_gain` per case)."""
    for case in document["cases"]:
        case["difference_gain"], case["differences"] = write_case_maps(root, document["reference"], case["images"])
