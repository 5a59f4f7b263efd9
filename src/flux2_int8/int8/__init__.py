"""Quantized linear layers and their matrix-product backends."""

from .kernels import quantize_activation
from .linear import Fp8Linear, Int8Linear, set_int8_backend

__all__ = ["Fp8Linear", "Int8Linear", "quantize_activation", "set_int8_backend"]
