"""W8A8 matrix products, one function per backend; all compute the same math.

    y = (clamp(round(x / input_scale), -128, 127) @ weight.T) * (input_scale * weight_scale) + bias

Shapes: x [M, K] (any float dtype), weight int8 [N, K], weight_scale float32 [N],
input_scale float32 0-d, bias [N] or None; y [M, N] in x's dtype.
"""

from __future__ import annotations

import torch

INT8_MIN, INT8_MAX = -128, 127


def quantize_activation(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """Static per-tensor quantization: float [M, K] -> int8 [M, K] (round half to even)."""
    return torch.clamp(torch.round(x.float() / input_scale), INT8_MIN, INT8_MAX).to(torch.int8)


def _integer_valued_activation(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """The quantized activation kept as float32 integers, skipping the int8 round trip.

    One new tensor, then in-place round and clamp: eager CPU runs are memory-bound
    here, and each extra temporary of [M, K] float32 costs as much as the op itself.
    """
    return torch.div(x.float(), input_scale).round_().clamp_(INT8_MIN, INT8_MAX)


def _rescale(accumulator: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """accumulator [M, N] (int32 or integer-valued float32) -> y [M, N] in `dtype`."""
    y = accumulator.float() if accumulator.dtype != torch.float32 else accumulator
    y = y.mul_(input_scale * weight_scale)
    if bias is not None:
        y = y.add_(bias.float())
    return y.to(dtype)


def can_use_int_mm(m: int, k: int, n: int) -> bool:
    """`torch._int_mm` on CUDA needs M > 16 and K, N multiples of 8."""
    return m > 16 and k % 8 == 0 and n % 8 == 0


def int_mm_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """CUDA tensor-core path: int8 x int8 -> int32 with `torch._int_mm`.

    Under `torch.compile`, Inductor fuses the quantization into the producer of `x`
    and the rescale into the epilogue, so only the int8 GEMM is left as a separate op.
    """
    accumulator = torch._int_mm(quantize_activation(x, input_scale), weight.t())
    return _rescale(accumulator, input_scale, weight_scale, bias, x.dtype)


def emulated_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Integer math carried in float32: exact while |accumulator| < 2**24, then fp32 rounding.

    This is the CPU backend (and CUDA's for small M or odd shapes): int8 values
    are exact in float32, so a float32 GEMM of them gives the integer products at fp32
    speed, where CPU `_int_mm` without VNNI is ~17x slower.
    """
    accumulator = _integer_valued_activation(x, input_scale) @ weight.float().t()
    return _rescale(accumulator, input_scale, weight_scale, bias, x.dtype)


def reference_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Dequantize both operands, then a float64 GEMM: the slow, obviously-right reference for tests."""
    x_dequantized = _integer_valued_activation(x, input_scale).double() * input_scale.double()
    weight_dequantized = weight.double() * weight_scale.double()[:, None]
    y = x_dequantized @ weight_dequantized.t()
    if bias is not None:
        y = y + bias.double()
    return y.to(x.dtype)


BACKENDS = {"int_mm": int_mm_linear, "emulated": emulated_linear, "reference": reference_linear}


def pick_backend(device: torch.device, m: int, k: int, n: int) -> str:
    """The fastest exact backend for a device and shape (the `auto` choice)."""
    if device.type == "cuda" and can_use_int_mm(m, k, n):
        return "int_mm"
    return "emulated"
