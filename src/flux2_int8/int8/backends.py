"""The INT8 backend table and the `auto` choice: one decision, in one place.

Every backend computes the same math (see `kernels`) with the signature
`(x [M, K], weight int8 [N, K], weight_scale float32 [N], input_scale float32 0-d, bias [N] | None) -> y [M, N]`.
The Triton backends reach the custom op `flux2_int8::w8a8_linear` (module `triton_w8a8`),
imported on first use because triton is an optional extra.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import torch

from ..errors import Flux2Int8Error
from .kernels import can_use_int_mm, emulated_linear, emulated_w8a8, int_mm_linear, quantize_activation, reference_linear

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


def _triton_op(device: torch.device) -> Callable[..., torch.Tensor]:
    """`torch.ops.flux2_int8.w8a8_linear`, registered on first use: triton is an optional extra.

    The op's own implementation off CUDA is `kernels.emulated_w8a8`; without triton that
    same function runs directly, and CUDA, which needs the kernel, is refused.
    """
    if TRITON_INSTALLED:
        from . import triton_w8a8

        return triton_w8a8.w8a8_linear
    if device.type != "cuda":
        return emulated_w8a8
    raise Flux2Int8Error("the INT8 backends 'triton' and 'triton_prequant' need the triton package: pip install 'flux2-int8[gpu]'")


BACKENDS: dict[str, Callable[..., torch.Tensor]] = {
    "int_mm": int_mm_linear,
    "emulated": emulated_linear,
    "reference": reference_linear,
    "triton": triton_linear,
    "triton_prequant": triton_prequant_linear,
}


def pick_backend(device: torch.device, k: int, n: int) -> str:
    """The fastest exact backend for a device and a [K] -> [N] layer (the `auto` choice).

    With Triton enabled on CUDA, eager runs quantize inside the GEMM ("triton") and compiled
    runs let Inductor fuse the quantization into the producer ("triton_prequant");
    the kernel masks its edges, so every shape suits it, M <= 16 included. `_int_mm`
    pads short activations itself, so the row count never decides.
    """
    if device.type == "cuda" and TRITON_IN_AUTO:
        return "triton_prequant" if torch.compiler.is_compiling() else "triton"
    if device.type == "cuda" and can_use_int_mm(k, n):
        return "int_mm"
    if device.type == "cpu" and CPU_HAS_VNNI:
        return "int_mm"
    return "emulated"
