"""How often nano draws what it is asked: sample prompts with the stock pipeline, read them back with `nano.score`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import Flux2KleinPipeline

from . import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, NANO_STEPS
from .grammar import Scene, split_scenes
from .score import Reading, accuracy, read_image, score_reading


@dataclass(frozen=True)
class Drawn:
    """One sampled picture, what the scorer read in it and which asks it met."""

    scene: Scene
    seed: int
    image: np.ndarray  # (128, 128, 3) uint8
    reading: Reading
    hits: dict[str, bool]


def draw_prompts(pipeline: Flux2KleinPipeline, scenes: Sequence[Scene], seed: int, batch: int = 24) -> list[np.ndarray]:
    """Each scene's picture at nano's native settings; image i's noise is seeded by `seed` alone, as in generate."""
    pictures: list[np.ndarray] = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        output = pipeline(
            prompt=[scene.prompt for scene in chunk],
            height=NANO_SIZE,
            width=NANO_SIZE,
            num_inference_steps=NANO_STEPS,
            max_sequence_length=NANO_MAX_SEQUENCE_LENGTH,
            generator=[torch.Generator("cpu").manual_seed(seed) for _ in chunk],
            output_type="np",
        )
        pictures += [np.round(image * 255).astype(np.uint8) for image in output.images]
    return pictures


def measure(pipeline: Flux2KleinPipeline, scenes: Sequence[Scene] | None = None, seeds: Sequence[int] = (0, 1)) -> tuple[dict[str, float], list[Drawn]]:
    """Accuracy over `scenes` (default: the 72 held-out ones) x `seeds`, and every picture behind it."""
    scenes = list(split_scenes()[1] if scenes is None else scenes)
    pipeline.set_progress_bar_config(disable=True)
    drawn: list[Drawn] = []
    for seed in seeds:
        for scene, image in zip(scenes, draw_prompts(pipeline, scenes, seed)):
            reading = read_image(image)
            drawn.append(Drawn(scene, seed, image, reading, score_reading(scene, reading)))
    return accuracy([item.hits for item in drawn]), drawn
