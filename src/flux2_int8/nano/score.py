"""Read back what a nano picture shows: border colour, object colour, object count, shape.

A plain image-processing reader (numpy and scipy only), so "does nano draw what
it is asked" is a number, not a judgement: every pixel is labelled with its
nearest palette colour, the border's majority is the background, the commonest
other colour is the object colour, and the connected regions of that colour
(after a small opening that removes the VAE's edge fringes) are the objects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .grammar import COLOURS, PALETTE, SHAPES, Scene

_BORDER = 4  # pixels of each edge read as the background (shapes keep 10 px away)
_FAR = 100.0  # RGB distance past which a pixel matches no palette colour (a blurred edge)
_MIN_AREA_FRACTION = 60 / 128**2  # smaller regions are specks, not objects (the smallest shape is ~290 px)
# Fill ratio (area over bounding box) of an upright triangle, a circle and a square: 0.5, 0.79, 1.
_SHAPE_BY_FILL = ((0.64, "triangle"), (0.9, "circle"), (2.0, "square"))

_PALETTE_RGB = np.array([PALETTE[name] for name in COLOURS], dtype=np.float32)


@dataclass(frozen=True)
class Reading:
    """What the scorer saw in one picture (None where it saw nothing it could name)."""

    background: str | None
    colour: str | None
    count: int
    shape: str | None


def read_image(image: np.ndarray) -> Reading:
    """Read an (H, W, 3) uint8 RGB picture."""
    labels = _palette_labels(np.asarray(image, dtype=np.float32))
    background = _majority(np.concatenate([labels[:_BORDER].ravel(), labels[-_BORDER:].ravel(),
                                           labels[:, :_BORDER].ravel(), labels[:, -_BORDER:].ravel()]))
    min_area = _MIN_AREA_FRACTION * labels.size
    inside = labels[labels >= 0]
    others = Counter(int(label) for label in inside[inside != background]) if background is not None else Counter()
    colour, area = others.most_common(1)[0] if others else (None, 0)
    if colour is None or area < min_area:
        return Reading(_name(background), None, 0, None)
    mask = ndimage.binary_opening(labels == colour, structure=np.ones((3, 3), dtype=bool))
    regions, found = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, regions, index=np.arange(1, found + 1))
    objects = [index + 1 for index, size in enumerate(sizes) if size >= min_area]
    shapes = [_shape(regions == index) for index in objects]
    shape = Counter(shapes).most_common(1)[0][0] if shapes else None
    return Reading(_name(background), _name(colour), len(objects), shape)


def score_reading(scene: Scene, reading: Reading) -> dict[str, bool]:
    """Which of the scene's asks the picture meets."""
    return {
        "background": reading.background == scene.background,
        "colour": reading.colour == scene.colour,
        "count": reading.count == scene.count,
        "shape": reading.shape == scene.shape,
    }


def accuracy(results: list[dict[str, bool]]) -> dict[str, float]:
    """The share of pictures meeting each ask, plus `all` (background, colour and count together)."""
    if not results:
        return {}
    keys = [*results[0], "all"]
    rows = [{**row, "all": row["background"] and row["colour"] and row["count"]} for row in results]
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}


def _palette_labels(image: np.ndarray) -> np.ndarray:
    """(H, W) index of each pixel's nearest palette colour, -1 where none is near."""
    distances = np.linalg.norm(image[:, :, None, :] - _PALETTE_RGB[None, None], axis=-1)
    labels = distances.argmin(axis=-1)
    labels[distances.min(axis=-1) > _FAR] = -1
    return labels


def _majority(labels: np.ndarray) -> int | None:
    named = labels[labels >= 0]
    return int(np.bincount(named).argmax()) if named.size else None


def _name(label: int | None) -> str | None:
    return None if label is None else COLOURS[label]


def _shape(region: np.ndarray) -> str:
    """Classify one region by how much of its bounding box it fills."""
    rows, cols = np.nonzero(region)
    fill = rows.size / ((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1))
    return next(name for limit, name in _SHAPE_BY_FILL if fill < limit)


assert {name for _, name in _SHAPE_BY_FILL} == set(SHAPES)
