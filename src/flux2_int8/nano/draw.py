"""Draw the picture a nano prompt asks for: the training data, made on the fly.

Shapes are axis-aligned, solid and never touch each other or the border, so a
correct picture has exactly `count` connected components of the object colour
and a border of the background colour (what `nano.score` reads back).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from .grammar import PALETTE, Scene

IMAGE_SIZE = 128  # nano's native size (pixels, square)
_MARGIN = 10  # free pixels between any shape and the border
_GAP = 8  # free pixels between two shapes
_SIZE_RANGE = {1: (34, 48), 2: (26, 38), 3: (24, 34)}  # shape side in pixels, by count


def draw_scene(scene: Scene, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene as a (size, size, 3) uint8 RGB array; positions and sizes come from `rng`."""
    image = Image.new("RGB", (size, size), PALETTE[scene.background])
    pen = ImageDraw.Draw(image)
    for box in _place_boxes(scene.count, rng, size):
        _draw_shape(pen, scene.shape, box, PALETTE[scene.colour])
    return np.asarray(image)


def draw_batch(scenes: list[Scene], rng: np.random.Generator, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Scenes as a float32 (B, 3, size, size) batch in [-1, 1], the VAE's input range."""
    pixels = np.stack([draw_scene(scene, rng, size) for scene in scenes])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _place_boxes(count: int, rng: np.random.Generator, size: int) -> list[tuple[int, int, int]]:
    """`count` non-touching square boxes (left, top, side), by rejection sampling."""
    low, high = _SIZE_RANGE[count]
    scale = size / IMAGE_SIZE
    while True:
        boxes: list[tuple[int, int, int]] = []
        for _ in range(count):
            side = int(rng.integers(int(low * scale), int(high * scale) + 1))
            left, top = (int(v) for v in rng.integers(_MARGIN, size - _MARGIN - side + 1, size=2))
            if all(_apart((left, top, side), other) for other in boxes):
                boxes.append((left, top, side))
        if len(boxes) == count:
            return boxes


def _apart(box: tuple[int, int, int], other: tuple[int, int, int]) -> bool:
    (left, top, side), (other_left, other_top, other_side) = box, other
    return (
        left + side + _GAP <= other_left
        or other_left + other_side + _GAP <= left
        or top + side + _GAP <= other_top
        or other_top + other_side + _GAP <= top
    )


def _draw_shape(pen: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int], colour: tuple[int, int, int]) -> None:
    left, top, side = box
    right, bottom = left + side - 1, top + side - 1
    if shape == "circle":
        pen.ellipse((left, top, right, bottom), fill=colour)
    elif shape == "square":
        pen.rectangle((left, top, right, bottom), fill=colour)
    else:  # triangle, apex up
        pen.polygon([(left + side / 2, top), (right, bottom), (left, bottom)], fill=colour)
