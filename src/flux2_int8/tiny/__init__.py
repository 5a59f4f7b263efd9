"""The built-in tiny klein pipeline: random weights, the real classes and key layout.

It is a product part: the demo, `bench --variant tiny` and every offline walk-through
run on it, and the tests build on it too. Owns: the tiny configs, the cached pipeline
folder, and random inputs for one transformer forward (its one-forward INT8/FP8 files
are made a floor up, in `quantization.one_forward`). May import: variants, formats,
int8. Never quantization/evaluate/bench/demo/commands, never `testing`.
"""

from .pipeline import (
    BFL_CHECKPOINT_FILE,
    TINY_BASE,
    TINY_TEXT_ENCODER_CONFIG,
    TINY_TRANSFORMER_CONFIG,
    TINY_VAE_CONFIG,
    TINY_VERSION,
    build_tiny_transformer,
    make_tiny_pipeline,
    tiny_pipeline_cache,
    write_bf16_checkpoint,
)
from .inputs import random_transformer_inputs

__all__ = [
    "BFL_CHECKPOINT_FILE",
    "TINY_BASE",
    "TINY_TEXT_ENCODER_CONFIG",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "TINY_VERSION",
    "build_tiny_transformer",
    "make_tiny_pipeline",
    "random_transformer_inputs",
    "tiny_pipeline_cache",
    "write_bf16_checkpoint",
]
