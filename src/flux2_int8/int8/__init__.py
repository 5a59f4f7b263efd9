"""Quantized linear layers and their matrix-product backends.

Imports point one way inside: primitives (`kernels`) <- the Triton op (`triton_w8a8`)
<- the backend table and the `auto` choice (`backends`) <- the layers (`linear`) <-
q/k/v fusion (`fusion`).
May import: errors, formats (the key table). Never loading or anything above.
"""

from .kernels import quantize_activation
from .linear import Fp8Linear, Int8Linear, set_int8_backend

__all__ = ["Fp8Linear", "Int8Linear", "quantize_activation", "set_int8_backend"]
