"""Making INT8 W8A8 checkpoints: calibration over the real pipeline, the recipe, export.

The public entry point is `flux2_int8.quantize(...)` (defined in `api.py`). Names load on
first use (PEP 562), so `flux2-int8 quantize` checks its options (`plan`) before torch.

May import: errors, variants, formats, int8, channels, loading, generate, nano, tiny (`one_forward`: the
tiny model quantized in one forward, for bench and tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

_LAZY_EXPORTS = {"CalibrationStatistics": ".api", "QuantizeResult": ".api", "quantize": ".api"}

if TYPE_CHECKING:
    from .api import CalibrationStatistics, QuantizeResult, quantize

__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


__all__ = ["CalibrationStatistics", "QuantizeResult", "quantize"]
