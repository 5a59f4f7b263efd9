"""Making INT8 W8A8 checkpoints: calibration over the real pipeline, the recipe, export.

`flux2_int8.quantize` (the package attribute) is the `quantize` function: the
package's `__init__` binds that name after importing this subpackage. Import this
subpackage's modules with `from flux2_int8.quantize.recipe import Recipe` (or
`from flux2_int8.quantize import recipe`); the form `import flux2_int8.quantize.recipe as m`
looks `quantize` up as an attribute and finds the function.
"""

from .api import CalibrationStatistics, QuantizeResult, quantize

__all__ = ["CalibrationStatistics", "QuantizeResult", "quantize"]
