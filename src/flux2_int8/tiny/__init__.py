"""The built-in tiny klein pipeline: random weights, the real classes and key layout.

It is a product part: the demo, `bench --variant tiny` and every offline walk-through
run on it, and the tests build on it too. Owns: the tiny configs, the cached pipeline
folder, and its one-forward INT8/FP8 files. May import: variants, formats, int8;
`quantized` also quantization (loaded lazily: `generate` resolves `--base tiny` here).
Never evaluate/bench/demo/commands, never `testing`.
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
from ..lazy import lazy_getattr

# The one-forward quantized files need the quantization stack, which needs `generate`, which
# resolves `--base tiny` through this package: so they load on first use (PEP 562).
_LAZY_EXPORTS = {name: ".quantized" for name in ("one_forward_amax", "random_transformer_inputs", "write_tiny_quantized")}
__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)

__all__ = [
    "BFL_CHECKPOINT_FILE",
    "TINY_BASE",
    "TINY_TEXT_ENCODER_CONFIG",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "TINY_VERSION",
    "build_tiny_transformer",
    "make_tiny_pipeline",
    "one_forward_amax",
    "random_transformer_inputs",
    "tiny_pipeline_cache",
    "write_bf16_checkpoint",
    "write_tiny_quantized",
]
