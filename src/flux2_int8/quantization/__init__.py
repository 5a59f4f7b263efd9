"""Making INT8 W8A8 checkpoints: calibration over the real pipeline, the recipe, export.

The public entry point is `flux2_int8.quantize(...)` (defined in `api.py`).

May import: errors, variants, formats, int8, loading, generate, tiny (`one_forward`: the
tiny model quantized in one forward, for bench and tests).
"""

from .api import CalibrationStatistics, QuantizeResult, quantize

__all__ = ["CalibrationStatistics", "QuantizeResult", "quantize"]
