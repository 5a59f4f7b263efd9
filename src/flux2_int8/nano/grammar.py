"""The prompt grammar nano draws: `[a|one|two|three] <colour> <shape>[s] on a <colour> background`.

One place knows the words, the colours' RGB values, which combinations the model
trains on and which are held out to measure it: the drawing code, the training
script and the scorer all read them from here.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Saturated, well separated colours, so the scorer can tell them apart after a lossy VAE.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 215, 30),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNT_WORDS: dict[str, int] = {"a": 1, "one": 1, "two": 2, "three": 3}

# Fixed, so the held-out set is the same on every machine and in every run.
HOLDOUT_SEED = 17
HOLDOUT_FRACTION = 0.2

_PROMPT_PATTERN = re.compile(
    r"^(?P<count>a|one|two|three) (?P<colour>\w+) (?P<shape>circle|square|triangle)s? on a (?P<background>\w+) background$"
)


@dataclass(frozen=True, order=True)
class Scene:
    """What one prompt asks for: `count` objects of one `shape` and `colour` on a `background`."""

    count_word: str
    colour: str
    shape: str
    background: str

    @property
    def count(self) -> int:
        return COUNT_WORDS[self.count_word]

    @property
    def prompt(self) -> str:
        plural = "s" if self.count > 1 else ""
        return f"{self.count_word} {self.colour} {self.shape}{plural} on a {self.background} background"


def all_scenes() -> list[Scene]:
    """Every combination of the grammar whose object and background colours differ (360)."""
    return [
        Scene(count_word, colour, shape, background)
        for count_word in COUNT_WORDS
        for colour in COLOURS
        for shape in SHAPES
        for background in COLOURS
        if colour != background
    ]


def split_scenes() -> tuple[list[Scene], list[Scene]]:
    """(training, held out): a fixed, seeded fifth of the combinations is never trained on."""
    scenes = all_scenes()
    random.Random(HOLDOUT_SEED).shuffle(scenes)
    held_out = round(len(scenes) * HOLDOUT_FRACTION)
    return sorted(scenes[held_out:]), sorted(scenes[:held_out])


def parse_prompt(prompt: str) -> Scene | None:
    """The scene a prompt of the grammar asks for, or None for any other text."""
    match = _PROMPT_PATTERN.match(prompt.strip().lower())
    if match is None or match["colour"] not in PALETTE or match["background"] not in PALETTE:
        return None
    return Scene(match["count"], match["colour"], match["shape"], match["background"])


def grammar_words() -> list[str]:
    """Every word a prompt of the grammar can use (the nano tokenizer keeps each one whole)."""
    words = [*COUNT_WORDS, *COLOURS, *SHAPES, *(f"{shape}s" for shape in SHAPES), "on", "background"]
    return list(dict.fromkeys(words))
