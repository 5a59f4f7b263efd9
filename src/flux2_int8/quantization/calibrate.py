"""Calibration over the real denoising loop: the pipeline's own `__call__`, observed.

Each sample is one ordinary `Flux2KleinPipeline` call (text encoder, reference-image
encoding, the denoising steps with CFG where the model uses it), so the linears see
exactly the inputs generation gives them. Observers hook the linears; nothing is
copied. Only the VAE decode of the calibration samples is skipped (`output_type=
"latent"`): it uses no quantized layer.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..errors import Flux2Int8Error
from .observers import InputAmaxObserver
from .prompts import PromptRecord, PromptSet

if TYPE_CHECKING:
    from diffusers import Flux2KleinPipeline


@dataclass(frozen=True)
class Schedule:
    """Which denoising steps a calibration sample runs.

    `total_steps` is the generation schedule (4 distilled, 50 base); `steps` of them,
    evenly spaced from the first (pure noise) to the last, are visited. Visiting a
    subset passes the scheduler exactly those sigmas, with `mu` still computed for
    `total_steps`, so every visited timestep is one generation uses; the latent jumps
    between them in larger Euler steps.
    """

    total_steps: int
    steps: int
    guidance_scale: float

    def sigmas(self) -> list[float] | None:
        """The visited sigmas before the scheduler's shift, or None for the full schedule."""
        if self.steps == self.total_steps:
            return None
        full = np.linspace(1.0, 1 / self.total_steps, self.total_steps)
        picks = np.unique(np.round(np.linspace(0, self.total_steps - 1, self.steps)).astype(int))
        return [float(s) for s in full[picks]]


def make_schedule(total_steps: int, guidance_scale: float, steps: int | None) -> Schedule:
    if steps is None:
        steps = total_steps
    if not 1 <= steps <= total_steps:
        raise Flux2Int8Error(f"--steps {steps}: this model generates in {total_steps} steps; calibrate on 1 to {total_steps} of them")
    return Schedule(total_steps, steps, guidance_scale)


@dataclass(frozen=True)
class CalibrationRun:
    """What a calibration run did."""

    samples: tuple[str, ...]  # prompt ids, in run order
    reference_images: int  # images generated (not observed) for edit and composition samples
    seconds: float


def sample_seed(seed: int, record_id: str) -> int:
    """A seed per prompt id: the same prompt gets the same noise whatever else is drawn."""
    return zlib.crc32(f"{seed}:{record_id}".encode())


class ReferenceImages:
    """Reference images for edit and composition samples, made once per run by the model itself.

    A referenced t2i record's image is generated from its prompt with the calibration
    schedule and resolution, seeded by its id, while every observer is paused (the
    reference run is not a calibration sample). Image files named by a record are read.
    """

    def __init__(self, pipe: Flux2KleinPipeline, prompts: PromptSet, schedule: Schedule, resolution: int, seed: int, observers: Sequence[InputAmaxObserver]):
        self.pipe, self.prompts, self.schedule = pipe, prompts, schedule
        self.resolution, self.seed, self.observers = resolution, seed, observers
        self.generated: dict[str, Image.Image] = {}

    def for_record(self, record: PromptRecord) -> list[Image.Image]:
        from ..generate import load_reference

        return [self._generate(reference) for reference in record.references] + [load_reference(path) for path in record.images]

    def _generate(self, record_id: str) -> Image.Image:
        if record_id not in self.generated:
            with _paused(self.observers):
                output = _call(self.pipe, self.prompts.records[record_id], [], self.schedule, self.resolution, self.seed, "pil")
            self.generated[record_id] = output.images[0]
        return self.generated[record_id]


def run_calibration(
    pipe: Flux2KleinPipeline, samples: Sequence[PromptRecord], prompts: PromptSet, schedule: Schedule,
    resolution: int, seed: int, observers: Sequence[InputAmaxObserver], progress: bool = True,
) -> CalibrationRun:
    """Run every sample through the pipeline with the observers attached."""
    references = ReferenceImages(pipe, prompts, schedule, resolution, seed, observers)
    start = time.perf_counter()
    with ExitStack() as stack:
        for observer in observers:
            stack.enter_context(observer)
        bar = tqdm(samples, desc="calibrating", unit="sample", disable=not progress)
        for record in bar:
            bar.set_postfix_str(record.task)
            images = references.for_record(record)
            _call(pipe, record, images, schedule, resolution, seed, "latent")
    return CalibrationRun(tuple(r.id for r in samples), len(references.generated), time.perf_counter() - start)


def _call(pipe: Flux2KleinPipeline, record: PromptRecord, images: list[Image.Image], schedule: Schedule, resolution: int, seed: int, output_type: str) -> Any:
    from ..generate import sampling_defaults

    return pipe(
        image=images or None,
        prompt=record.prompt,
        height=resolution,
        width=resolution,
        num_inference_steps=schedule.total_steps,
        sigmas=schedule.sigmas(),
        guidance_scale=schedule.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(sample_seed(seed, record.id)),
        output_type=output_type,
        max_sequence_length=sampling_defaults(pipe).max_sequence_length,  # as generate pads prompts
    )


@contextmanager
def _paused(observers: Sequence[InputAmaxObserver]) -> Iterator[None]:
    with ExitStack() as stack:
        for observer in observers:
            stack.enter_context(observer.paused())
        yield
