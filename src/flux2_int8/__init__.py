"""flux2-int8: INT8 W8A8 FLUX.2 [klein] on GPUs without FP8, through diffusers.

The public API is imported on first use (PEP 562), so `import flux2_int8` and the
CLI's `--help` stay instant instead of paying for torch and diffusers up front.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .errors import CheckpointError, ConfigError, Flux2Int8Error, UnsupportedFormatError
from .lazy import lazy_getattr

from .version import __version__

# public name -> module (relative to this package) that defines it
_LAZY_EXPORTS = {
    "load_transformer": ".loading",
    "load_text_encoder": ".loading",
    "load_pipeline": ".generate",
    "plan_memory": ".planning",
    "MemoryPlan": ".planning",
    "quantize": ".quantization",
    "CalibrationStatistics": ".quantization",
    "QuantizeResult": ".quantization",
    "Int8Linear": ".int8",
    "Fp8Linear": ".int8",
    "set_int8_backend": ".int8",
    "fuse_qkv_projections": ".int8.fusion",
    "VARIANTS": ".variants",
    "get_variant": ".variants",
}

if TYPE_CHECKING:
    from .generate import load_pipeline
    from .int8 import Fp8Linear, Int8Linear, set_int8_backend
    from .int8.fusion import fuse_qkv_projections
    from .loading import load_text_encoder, load_transformer
    from .quantization import CalibrationStatistics, QuantizeResult, quantize
    from .variants import VARIANTS, get_variant


__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)

if "diffusers" in sys.modules:
    # diffusers (and torch) are loaded already, so registering our quantizer costs
    # milliseconds: `Flux2Transformer2DModel.from_pretrained` then reads flux2-int8
    # folders. Otherwise `flux2_int8.loading` registers it when first imported.
    from .loading import diffusers_quantizer as _diffusers_quantizer

    _diffusers_quantizer.register()


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


__all__ = [
    "VARIANTS",
    "CalibrationStatistics",
    "CheckpointError",
    "ConfigError",
    "Flux2Int8Error",
    "Fp8Linear",
    "Int8Linear",
    "MemoryPlan",
    "QuantizeResult",
    "UnsupportedFormatError",
    "__version__",
    "fuse_qkv_projections",
    "get_variant",
    "load_pipeline",
    "plan_memory",
    "load_text_encoder",
    "load_transformer",
    "quantize",
    "set_int8_backend",
]
