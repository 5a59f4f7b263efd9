"""flux2-int8: INT8 W8A8 FLUX.2 [klein] on GPUs without FP8, through diffusers."""

from .errors import CheckpointError, ConfigError, Flux2Int8Error, UnsupportedFormatError
from .generate import load_pipeline
from .int8 import Fp8Linear, Int8Linear, set_int8_backend
from .loading import load_text_encoder, load_transformer
from .quantize import CalibrationStatistics, QuantizeResult, quantize  # binds `quantize` to the function, see quantize/__init__
from .variants import VARIANTS, get_variant

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "CalibrationStatistics",
    "CheckpointError",
    "ConfigError",
    "Flux2Int8Error",
    "Fp8Linear",
    "Int8Linear",
    "QuantizeResult",
    "UnsupportedFormatError",
    "__version__",
    "get_variant",
    "load_pipeline",
    "load_text_encoder",
    "load_transformer",
    "quantize",
    "set_int8_backend",
]
