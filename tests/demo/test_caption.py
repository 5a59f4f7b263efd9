"""The demo's caption says what the scorer read, and whether that is what the prompt asked."""

from __future__ import annotations

from PIL import Image, ImageDraw

from flux2_int8.demo.run import describe_reading


def _square() -> Image.Image:
    image = Image.new("RGB", (128, 128), (40, 70, 160))
    ImageDraw.Draw(image).rectangle((32, 32, 96, 96), fill=(200, 30, 30))
    return image


def test_a_square_read_as_asked_is_captioned_as_such():
    assert describe_reading(_square(), "one red square on a blue background") == "1 red square on blue (as asked)"


def test_a_square_asked_as_circles_is_never_captioned_circles():
    caption = describe_reading(_square(), "two red circles on a blue background")
    assert "circle" not in caption and caption.endswith("not as asked: count, shape")


def test_plural_follows_the_count():
    image = Image.new("RGB", (128, 128), (40, 70, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 40, 40), fill=(200, 30, 30))
    draw.rectangle((70, 70, 100, 100), fill=(200, 30, 30))
    assert describe_reading(image) == "2 red squares on blue"
