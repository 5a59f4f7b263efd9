"""Test helpers: a tiny random-weight FLUX.2 [klein] pipeline with the real layout."""

from .tiny import (
    BFL_CHECKPOINT_FILE,
    KLEIN_SCHEDULER_CONFIG,
    TINY_TEXT_ENCODER_CONFIG,
    TINY_TRANSFORMER_CONFIG,
    TINY_VAE_CONFIG,
    TINY_VERSION,
    build_tiny_transformer,
    make_tiny_pipeline,
    tiny_pipeline_cache,
    write_bfl_checkpoint,
)

__all__ = [
    "BFL_CHECKPOINT_FILE",
    "KLEIN_SCHEDULER_CONFIG",
    "TINY_TEXT_ENCODER_CONFIG",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "TINY_VERSION",
    "build_tiny_transformer",
    "make_tiny_pipeline",
    "tiny_pipeline_cache",
    "write_bfl_checkpoint",
]
