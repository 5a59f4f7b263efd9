"""Running requests through a loaded pipeline: one image per call, timed, written as PNG."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import Flux2KleinPipeline
from PIL import Image
from tqdm.auto import tqdm

from .. import limits
from .jobs import Job
from .output import check_finite_image, png_metadata, write_png
from .pipeline import sampling_defaults
from .requests import load_reference


@dataclass(frozen=True)
class Generated:
    """One image made: where it was written and the seconds the pipeline took for it."""

    job: Job
    seconds: float
    size: tuple[int, int]


def generate_image(
    pipeline: Flux2KleinPipeline,
    prompt: str,
    references: Sequence[Image.Image],
    seed: int,
    steps: int,
    guidance: float,
    width: int | None = None,
    height: int | None = None,
    on_step: Callable[[], None] | None = None,
    max_sequence_length: int | None = None,
) -> Image.Image:
    """One image: text-to-image without references, an edit with one, a composition with several.

    The initial noise comes from a CPU generator, so a seed gives the same noise on
    every device, and a BF16 and an INT8 pipeline start from the same latents.
    Without width/height the pipeline uses the first reference's size (else 1024).
    Prompts are padded to `max_sequence_length` tokens (default: the model's own from
    `sampling_defaults`; klein: 512, nano: 32), so every caller pads as the model was trained.
    """
    defaults = sampling_defaults(pipeline)
    if max_sequence_length is None:
        max_sequence_length = defaults.max_sequence_length
    limits.SEED.check(seed, "seed")
    limits.STEPS.check(steps, "steps")
    limits.GUIDANCE.check(guidance, "guidance")
    model = "nano" if defaults.size is not None else None  # a built-in with a native size: the smaller limit
    limits.check_side(width, "width", model)
    limits.check_side(height, "height", model)
    if model is not None and references and (width is None or height is None) and max(references[0].size) > limits.max_side(model):
        raise limits.RangeError(f"the first reference image is {references[0].width}x{references[0].height}, the size this edit would take; {model} makes at most {limits.max_side(model)} px a side: give --width and --height")

    def step_callback(pipe: Flux2KleinPipeline, step: int, timestep: torch.Tensor, tensors: dict) -> dict:
        if on_step is not None:
            on_step()
        return {}

    result = pipeline(
        output_type="np",  # floats, so a NaN is still visible to `check_finite_image` (as a PIL image it is black)
        image=list(references) or None,
        prompt=prompt,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=step_callback,
        max_sequence_length=max_sequence_length,
    )
    pixels = result.images[0]  # [H, W, 3] float in [0, 1]
    check_finite_image(pixels, prompt, seed)
    return pipeline.image_processor.numpy_to_pil(pixels[None])[0]


def run_jobs(
    pipeline: Flux2KleinPipeline,
    jobs: Sequence[Job],
    steps: int,
    guidance: float,
    width: int | None,
    height: int | None,
    base: str,
    checkpoint: str | None,
    text_encoder: str | None = None,
    progress: bool = True,
    loras: Sequence[str] = (),
    fused_loras: bool = False,
) -> list[Generated]:
    """Make and write every image, with one progress bar over all denoising steps.

    The time per image (prompt encoding, denoising, VAE decode; not the PNG write) is
    printed under the bar and returned.
    """
    pipeline.set_progress_bar_config(disable=True)  # our bar covers the whole run
    done: list[Generated] = []
    with tqdm(total=len(jobs) * steps, unit="step", disable=not progress, desc="generating") as bar:
        for job in jobs:
            item = run_job(pipeline, job, steps, guidance, width, height, base, checkpoint, text_encoder, on_step=lambda: bar.update(1), loras=loras, fused_loras=fused_loras)
            done.append(item)
            if progress:
                tqdm.write(f"{job.path}  {item.size[0]}x{item.size[1]}  seed {job.seed}  {item.seconds:.2f} s")
    return done


def run_job(
    pipeline: Flux2KleinPipeline,
    job: Job,
    steps: int,
    guidance: float,
    width: int | None,
    height: int | None,
    base: str,
    checkpoint: str | None,
    text_encoder: str | None = None,
    on_step: Callable[[], None] | None = None,
    loras: Sequence[str] = (),
    fused_loras: bool = False,
) -> Generated:
    """Make one job's image and write it (atomically) with its settings in the PNG."""
    references = [load_reference(path) for path in job.request.images]
    start = time.perf_counter()
    image = generate_image(pipeline, job.request.prompt, references, job.seed, steps, guidance, width, height, on_step=on_step)
    seconds = time.perf_counter() - start
    metadata = png_metadata(job.request.prompt, job.seed, steps, guidance, image.size, base, checkpoint, job.request.images, text_encoder, loras, fused_loras)
    write_png(job.path, image, metadata)
    return Generated(job, seconds, image.size)


def resolve_sampling(pipeline: Flux2KleinPipeline, steps: int | None, guidance: float | None) -> tuple[int, float]:
    """The steps and guidance a run uses: the given ones, else the model's defaults (a distilled model's guidance is its own)."""
    defaults = sampling_defaults(pipeline)
    distilled = bool(pipeline.config.get("is_distilled", False))
    return steps or defaults.steps, defaults.guidance if guidance is None or distilled else guidance
