"""W8A8 matrix products, one function per backend; all compute the same math.

    y = (clamp(round(x / input_scale), -128, 127) @ weight.T) * (input_scale * weight_scale) + bias

Shapes: x [M, K] (any float dtype), weight int8 [N, K], weight_scale float32 [N],
input_scale float32 0-d, bias [N] or None; y [M, N] in x's dtype.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from ..errors import Flux2Int8Error

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


def rescale_accumulator(accumulator: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """accumulator [M, N] (int32 or integer-valued float32) -> y [M, N] in `dtype`."""
    y = accumulator.float() if accumulator.dtype != torch.float32 else accumulator
    y = y.mul_(input_scale * weight_scale)
    if bias is not None:
        y = y.add_(bias.float())
    return y.to(dtype)


INT_MM_MIN_ROWS = 17  # torch._int_mm on CUDA needs M > 16


def can_use_int_mm(m: int, k: int, n: int) -> bool:
    """`torch._int_mm` on CUDA needs K, N multiples of 8 (M <= 16 is padded; on a CPU any shape goes)."""
    return k % 8 == 0 and n % 8 == 0


def int_mm_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Tensor-core path: int8 x int8 -> int32 with `torch._int_mm`.

    Under `torch.compile`, Inductor fuses the quantization into the producer of `x`
    and the rescale into the epilogue, so only the int8 GEMM is left as a separate op.
    A short activation (the modulation layers run at M = batch) is padded with zero
    rows up to 17: cheaper than widening a [24576, 4096] weight to float on every call.
    """
    quantized = quantize_activation(x, input_scale)
    rows = quantized.shape[0]
    if rows < INT_MM_MIN_ROWS:
        quantized = torch.nn.functional.pad(quantized, (0, 0, 0, INT_MM_MIN_ROWS - rows))
    accumulator = torch._int_mm(quantized, weight.t())[:rows]
    return rescale_accumulator(accumulator, input_scale, weight_scale, bias, x.dtype)


def emulated_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Integer math carried in float32: exact while |accumulator| < 2**24, then fp32 rounding.

    This is the CPU backend (and CUDA's for small M or odd shapes): int8 values
    are exact in float32, so a float32 GEMM of them gives the integer products at fp32
    speed, where CPU `_int_mm` without VNNI is ~17x slower.
    """
    return rescale_accumulator(emulated_accumulator(x, weight, input_scale), input_scale, weight_scale, bias, x.dtype)


def emulated_accumulator(x: torch.Tensor, weight: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] float, weight int8 [N, K] -> the integer accumulator [M, N] held in float32."""
    return _integer_valued_activation(x, input_scale) @ weight.float().t()


def reference_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Dequantize both operands, then a float64 GEMM: the slow, obviously-right reference for tests."""
    x_dequantized = _integer_valued_activation(x, input_scale).double() * input_scale.double()
    weight_dequantized = weight.double() * weight_scale.double()[:, None]
    y = x_dequantized @ weight_dequantized.t()
    if bias is not None:
        y = y + bias.double()
    return y.to(x.dtype)


def triton_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Fused Triton W8A8 GEMM, the activation quantized inside the kernel's load.

    Best where nothing fuses the quantization into the op producing `x` (eager mode):
    x is read once as float, and no int8 copy of it is written.
    """
    return _triton_op(x.device)(x, weight, weight_scale, input_scale, bias, x.dtype)


def triton_prequant_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The same Triton GEMM fed an int8 activation quantized by torch ops.

    Under `torch.compile` Inductor fuses that quantization into the op producing `x`
    (norm, modulation, activation), so the GEMM reads int8 and skips re-quantizing
    each x tile once per output tile; q, k and v share one quantized input.
    """
    return _triton_op(x.device)(quantize_activation(x, input_scale), weight, weight_scale, input_scale, bias, x.dtype)


def emulated_w8a8(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    """The Triton op's math off CUDA: x [M, K] float or already-quantized int8 -> y [M, N] `out_dtype`."""
    accumulator = x.float() @ weight.float().t() if x.dtype == torch.int8 else emulated_accumulator(x, weight, input_scale)
    return rescale_accumulator(accumulator, input_scale, weight_scale, bias, out_dtype)


def _triton_op(device: torch.device):  # type: ignore[no-untyped-def]
    """`torch.ops.flux2_int8.w8a8_linear`, registered on first use: triton is an optional extra.

    Off CUDA the op only emulates, so without triton the same emulation runs directly.
    """
    if not TRITON_INSTALLED and device.type != "cuda":
        return emulated_w8a8
    if not TRITON_INSTALLED:
        raise Flux2Int8Error("the INT8 backends 'triton' and 'triton_prequant' need the triton package: pip install 'flux2-int8[gpu]'")
    from . import triton_w8a8

    return triton_w8a8.w8a8_linear


BACKENDS = {
    "int_mm": int_mm_linear,
    "emulated": emulated_linear,
    "reference": reference_linear,
    "triton": triton_linear,
    "triton_prequant": triton_prequant_linear,
}

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
# `auto` uses Triton on CUDA only when FLUX2_INT8_TRITON=1 (read at import): the fused
# kernel is tested for exactness but has not been timed on a GPU yet, while
# torch._int_mm's speed is known. Flip the default once docs/benchmarks.md shows it wins.
TRITON_IN_AUTO = TRITON_INSTALLED and os.environ.get("FLUX2_INT8_TRITON", "0") == "1" and torch.cuda.is_available()

# On a CPU with VNNI (AVX512-VNNI / AVX-VNNI), oneDNN's int8 GEMM behind `torch._int_mm`
# is exact, takes any shape and ran 2.7x faster than the float32 emulation at
# M=4096, K=N=3072 (benchmarks/cpu_int8_linear.py --int-mm, AMD EPYC, torch 2.13);
# without VNNI it is many times slower than float32, so the emulation stays the default there.
CPU_HAS_VNNI = bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)())


def pick_backend(device: torch.device, m: int, k: int, n: int) -> str:
    """The fastest exact backend for a device and shape (the `auto` choice).

    With Triton enabled on CUDA, eager runs quantize inside the GEMM ("triton") and compiled
    runs let Inductor fuse the quantization into the producer ("triton_prequant");
    the kernel masks its edges, so every shape suits it, M <= 16 included.
    """
    if device.type == "cuda" and TRITON_IN_AUTO:
        return "triton_prequant" if torch.compiler.is_compiling() else "triton"
    if device.type == "cuda" and can_use_int_mm(m, k, n):
        return "int_mm"
    if device.type == "cpu" and CPU_HAS_VNNI:
        return "int_mm"
    return "emulated"
