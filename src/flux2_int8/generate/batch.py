"""Several images in one pipeline call, each exactly as it would be made alone.

A server groups requests that share every setting but the prompt and the seed; one
call of the pipeline then denoises them together, which is faster where a single
image leaves the device idle (small models, small sizes). What must not change is
the picture: each image keeps its own CPU generator, so its initial noise is the
one `generate_image` draws for that seed, whatever else shares the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import Flux2KleinPipeline
from PIL import Image

from .pipeline import sampling_defaults


def generate_images(
    pipeline: Flux2KleinPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    references: Sequence[Image.Image] = (),
    steps: int = 4,
    guidance: float = 1.0,
    width: int | None = None,
    height: int | None = None,
    max_sequence_length: int | None = None,
) -> list[Image.Image]:
    """One image per (prompt, seed), made in a single pipeline call.

    Parameters
    ----------
    pipeline : Flux2KleinPipeline
        A loaded pipeline.
    prompts, seeds : sequences of the same length
        Image i is `prompts[i]` from a CPU generator seeded with `seeds[i]`.
    references : sequence of PIL images
        Reference images shared by every image of the call (none: text-to-image;
        klein's pipeline conditions the whole batch on the same references).
    steps, guidance, width, height, max_sequence_length
        As for `generate_image`; `max_sequence_length` defaults to the model's own.

    Returns
    -------
    list of PIL.Image.Image
        In the order of `prompts`.
    """
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"generate_images needs as many seeds as prompts (at least one), got {len(prompts)} and {len(seeds)}")
    if max_sequence_length is None:
        max_sequence_length = sampling_defaults(pipeline).max_sequence_length
    vae = pipeline.vae
    sliced = getattr(vae, "use_slicing", None)
    if sliced is not None:
        # Decode image by image (the VAE's own slicing): a convolution's CPU kernel is chosen
        # by batch size, so a batched decode differs from the single one by a level or two;
        # sliced, each image is bitwise what it is alone. The transformer and the text
        # encoder are bitwise per row already; the decode is a small part of the time.
        vae.use_slicing = True
    try:
        result = pipeline(
            image=list(references) or None,
            prompt=list(prompts),
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            max_sequence_length=max_sequence_length,
        )
    finally:
        if sliced is not None:
            vae.use_slicing = sliced
    return list(result.images)
