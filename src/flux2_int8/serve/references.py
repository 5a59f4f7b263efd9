"""Reference images from a request's upload: format, size and pixel count checked from the header first.

A PNG of a few KiB can declare 50,000 x 50,000 pixels; PIL reads the declared size
without decoding, so a bomb is refused before a byte of pixels is unpacked.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..generate.requests import MIN_SIDE
from .errors import ApiError, bad_field
from .settings import Limits

# PIL's format names of what klein's image processor takes.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True)
class References:
    """The decoded RGB references of one edit and a digest of their bytes (edits batch only with the same references)."""

    images: tuple[Image.Image, ...]
    digest: str


def read_references(uploads: Sequence[tuple[str, bytes]], limits: Limits) -> References:
    """(file name, bytes) of each `image[]` part -> checked RGB images."""
    if not uploads:
        raise bad_field("image", "an edit needs at least one reference image (multipart field image or image[])", code="missing_required_parameter")
    if len(uploads) > limits.max_references:
        raise bad_field("image", f"{len(uploads)} reference images; this server takes at most {limits.max_references}", code="too_many")
    digest = hashlib.sha256()
    images = []
    for index, (name, data) in enumerate(uploads):
        images.append(_decode(name or f"image {index + 1}", data, limits))
        digest.update(hashlib.sha256(data).digest())
    return References(tuple(images), digest.hexdigest())


def _decode(name: str, data: bytes, limits: Limits) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.format not in ACCEPTED_FORMATS:
                raise bad_field("image", f"{name}: {opened.format} images are not taken; send PNG, JPEG or WebP", code="unsupported_format")
            width, height = opened.size
            if width * height > limits.max_pixels:
                raise ApiError(413, f"image: {name} is {width}x{height} = {width * height} pixels; this server takes at most {limits.max_pixels}", param="image", code="image_too_large")
            if min(width, height) < MIN_SIDE:
                raise bad_field("image", f"{name} is {width}x{height}; the model needs at least {MIN_SIDE} px a side")
            return opened.convert("RGB")
    except Image.DecompressionBombError:
        raise ApiError(413, f"image: {name} declares more pixels than any image this server takes (at most {limits.max_pixels})", param="image", code="image_too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise bad_field("image", f"{name}: cannot be read as an image ({type(error).__name__})", code="invalid_image") from None
