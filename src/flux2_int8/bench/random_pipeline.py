"""A whole full-size klein pipeline with random weights, built on the device: serving benchmarks with no download.

The transformer comes from `random_weights.random_transformer` in the format asked
(INT8 W8A8 with static scales by default), the Qwen3 text encoder and the VAE are
random at their real sizes, and the tiny pipeline's byte-level tokenizer stands in for
Qwen's (prompts are padded to 512 tokens, so the encoder's work is the real one).
Speed and memory do not depend on the weights' values; the pictures are noise.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

from ..tiny import tiny_pipeline_cache
from ..variants import KLEIN_SCHEDULER_CONFIG, Architecture, get_variant
from .random_weights import check_format, qwen3_config_for, random_text_encoder, random_transformer, random_vae


def random_pipeline(variant: str, fmt: str = "int8", device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Flux2KleinPipeline:
    """`variant` (klein-4b, klein-9b, klein-base-*) at full size with random weights, its transformer in `fmt`, on `device`.

    Parameters
    ----------
    variant : str
        A klein variant name.
    fmt : str
        The transformer's format: bf16, int8, fp8 (see `random_weights.FORMATS`).
    device, dtype
        Where the weights are made, and the compute dtype.
    seed : int
        Seeds the transformer; the text encoder and VAE use seed + 1 and seed + 2.

    Returns
    -------
    Flux2KleinPipeline
        diffusers' pipeline, as `load_pipeline` returns it.
    """
    chosen = get_variant(variant)
    pipeline = Flux2KleinPipeline(
        transformer=random_transformer(chosen.architecture, check_format(fmt), device, dtype, seed=seed),
        is_distilled=chosen.distilled,
        **random_components(chosen.architecture, device, dtype, seed),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def random_components(architecture: Architecture, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> dict[str, Any]:
    """Everything of a full-size klein pipeline but the transformer: scheduler, random VAE (seed + 2)
    and Qwen3 text encoder (seed + 1) at their real sizes, and a stand-in tokenizer."""
    from transformers import AutoTokenizer

    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER_CONFIG),
        "vae": random_vae(device, dtype, seed=seed + 2),
        "text_encoder": random_text_encoder(qwen3_config_for(architecture), device, dtype, seed=seed + 1),
        # The tiny byte-level BPE stands in for Qwen's: prompts are padded to 512 tokens, so the
        # encoder's work is the same; its ids (< 512) are all inside Qwen3's 151936-entry vocabulary.
        "tokenizer": AutoTokenizer.from_pretrained(tiny_pipeline_cache() / "tokenizer"),
    }
