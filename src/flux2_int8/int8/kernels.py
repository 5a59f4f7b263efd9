"""W8A8 primitives: activation quantization, rescale, and the plain-torch GEMM paths.

    y = (clamp(round(x / input_scale), -128, 127) @ weight.T) * (input_scale * weight_scale) + bias

Shapes: x [M, K] (any float dtype), weight int8 [N, K], weight_scale float32 [N],
bias [N] or None; y [M, N] in x's dtype. input_scale is float32 0-d for static
activations (calibrated once), or [M, 1] for dynamic ones (`row_scale`, one
scale per row, i.e. per token): every function below broadcasts either form the same way.

Every backend takes `input_scale=None` to mean dynamic (the row scales are computed here,
from the rotated input where the layer is ConvRot's) and an optional `rotation` [G, G]
applied to x before it is quantized (`quantize_input` is the definition of both steps).

This is the ground floor of `int8/` (with `rotation` below it): the Triton op (`triton_w8a8`) builds on it, the
backend table (`backends`) on both, the layers (`linear`) on the table.
"""

from __future__ import annotations

import torch

from .rotation import rotate

INT8_MIN, INT8_MAX = -128, 127
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def quantize_activation(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """Static per-tensor quantization: float [M, K] -> int8 [M, K] (round half to even)."""
    return torch.clamp(torch.round(x.float() / input_scale), INT8_MIN, INT8_MAX).to(torch.int8)


def row_scale(x: torch.Tensor) -> torch.Tensor:
    """Symmetric scale of each row, float32 [rows, 1]: max |row| / 127 (an all-zero row gets 1).

    The one rule for both per-row quantizations: activations per token (dynamic, as
    ComfyUI's INT8 runs; under `torch.compile` the reduction fuses into the op producing
    `x`) and weights per output channel (`weights.weight_scale_per_channel`).
    """
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    return torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))


def _integer_valued_activation(x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """The quantized activation kept as float32 integers, skipping the int8 round trip.

    One new tensor (the upcast inside the division: a 1-element divisor takes part in type
    promotion, where a 0-d one would leave a bf16 x in bf16), then in-place round and clamp:
    eager CPU runs are memory-bound here, and each extra temporary of [M, K] float32 costs as
    much as the op itself.
    """
    return torch.div(x if x.dtype in _FLOAT32_OR_NARROWER else x.float(), _float32_divisor(input_scale)).round_().clamp_(INT8_MIN, INT8_MAX)


_FLOAT32_OR_NARROWER = (torch.float32, torch.bfloat16, torch.float16)


def _float32_divisor(scale: torch.Tensor) -> torch.Tensor:
    """`scale` as a dimensioned tensor, so dividing a bf16/fp16 x by it runs in float32 (exactly x.float() / scale).

    A 0-d float32 tensor does not take part in type promotion against a dimensioned bf16 x,
    which would divide in bf16; a 1-element one does. Per-row [M, 1] scales already are.
    """
    return scale if scale.dim() else scale.reshape(1)


# Eager CPU runs stream big activations through a float32 scratch of this many elements
# (1 MiB, inside every x86 core's L2): the same division, rounding and clamp as
# `quantize_activation`, in place on a cache-resident block, so neither an [M, K] float32
# temporary nor an [M, N] one is written (their fresh pages alone cost as much as the math).
SCRATCH_ELEMENTS = 1 << 18
# Below this many elements a tensor is one block: the plain ops are as fast, with fewer calls.
_BLOCKED_FROM = 1 << 16


def _row_blocks(rows: int, width: int) -> range:
    """Start rows of the row blocks of a [rows, width] tensor that fit the scratch."""
    return range(0, rows, max(1, SCRATCH_ELEMENTS // max(width, 1)))


def _blocked(x: torch.Tensor) -> bool:
    """Whether the eager, cache-blocked form applies: a CPU tensor big enough to gain, outside tracing."""
    return x.device.type == "cpu" and x.numel() >= _BLOCKED_FROM and not torch.compiler.is_compiling()


def prepared_input(x: torch.Tensor, input_scale: torch.Tensor | None, rotation: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x rotated, float, and its scale): the float side of `quantize_input`, for the float-math backends."""
    if rotation is not None:
        x = rotate(x, rotation)
    return x, row_scale(x) if input_scale is None else input_scale


def quantize_input(x: torch.Tensor, input_scale: torch.Tensor | None, rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition of an INT8 layer's input step: rotate (ConvRot), scale, quantize -> (int8 [M, K], scale).

    `input_scale` None means dynamic: one scale per row of the (rotated) input (`row_scale`).
    This plain form is what `torch.compile` traces and fuses into the producer of x.
    """
    x, scale = prepared_input(x, input_scale, rotation)
    return quantize_activation(x, scale), scale


def quantize_input_eager(x: torch.Tensor, input_scale: torch.Tensor | None, rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_input` for eager runs, in one pass over x: rotation, row scales and rounding per cached block.

    On CPU, big inputs go row block by row block through the float32 scratch
    (`SCRATCH_ELEMENTS`): upcast (fused with the division where nothing comes between), rotate
    the block (rows are whole, so every group is in it), take each row's scale from
    `torch.aminmax` (the same max |x| as `row_scale`, with no |x| temporary), then divide,
    round and clamp in place. Without a rotation the integers
    and scales are those of `quantize_input` bit for bit; with one, the block's float32
    rotation may reassociate sums, as `rotate` on the whole tensor does.
    """
    if not _blocked(x):
        x, scale = prepared_input(x, input_scale, rotation)
        return _integer_valued_activation(x, scale).to(torch.int8), scale
    rows, width = x.shape
    quantized = torch.empty((rows, width), dtype=torch.int8)
    scales = torch.empty((rows, 1), dtype=torch.float32) if input_scale is None else input_scale
    per_row = scales.dim() > 0
    step = max(1, SCRATCH_ELEMENTS // width)
    scratch = torch.empty((min(step, rows), width), dtype=torch.float32)
    divisor = _float32_divisor(scales)
    for start in _row_blocks(rows, width):
        count = min(step, rows - start)
        block = scratch[:count]
        rows_here = slice(start, start + count)
        if rotation is None:  # upcast and divide in one pass: x.float() / s exactly
            if input_scale is None:
                _row_scale_into(x[rows_here], scales[rows_here])
            torch.div(x[rows_here], divisor[rows_here] if per_row else divisor, out=block)
        else:
            block.copy_(x[rows_here])
            block = rotate(block, rotation)
            if input_scale is None:
                _row_scale_into(block, scales[rows_here])
            block.div_(divisor[rows_here] if per_row else divisor)
        block.round_().clamp_(INT8_MIN, INT8_MAX)
        quantized[rows_here].copy_(block)
    return quantized, scales


def _row_scale_into(block: torch.Tensor, out: torch.Tensor) -> None:
    """`row_scale` of a block written into `out` [rows, 1], from its min and max (no |x| temporary; exact in any dtype)."""
    low, high = torch.aminmax(block, dim=-1, keepdim=True)
    amax = torch.maximum(high, low.neg_()).float()
    out.copy_(torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax)))


def rescale_accumulator(accumulator: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """accumulator [M, N] (int32 or integer-valued float32) -> y [M, N] in `dtype`."""
    y = accumulator.float() if accumulator.dtype != torch.float32 else accumulator
    y = y.mul_(input_scale * weight_scale)
    if bias is not None:
        y = y.add_(bias.float())
    return y.to(dtype)


def rescale_accumulator_eager(accumulator: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """`rescale_accumulator` for eager runs: the same float32 operations in the same order, bit for bit.

    On CPU, a big int32 (or integer-valued float32) accumulator is converted, scaled and biased row block by row block
    in a cache-resident float32 scratch and written once, in `dtype`: no [M, N] float32
    temporary (nor, for per-row scales, their [M, N] outer product with `weight_scale`).
    """
    if accumulator.dtype not in (torch.int32, torch.float32) or torch.compiler.is_compiling():
        return rescale_accumulator(accumulator, input_scale, weight_scale, bias, dtype)
    if not _blocked(accumulator):  # small: one op fewer (int32 * float32 is the float32 product of acc.float())
        y = torch.mul(accumulator, input_scale * weight_scale)
        return (y if bias is None else y.add_(bias.float())).to(dtype)
    rows, width = accumulator.shape
    y = torch.empty((rows, width), dtype=dtype)
    step = max(1, SCRATCH_ELEMENTS // width)
    scratch = torch.empty((min(step, rows), width), dtype=torch.float32)
    per_row = input_scale.dim() > 0
    scale = None if per_row else input_scale * weight_scale
    row_scales = torch.empty((min(step, rows), width), dtype=torch.float32) if per_row else None
    bias = None if bias is None else bias.float()
    for start in _row_blocks(rows, width):
        count = min(step, rows - start)
        block = scratch[:count]
        block.copy_(accumulator[start : start + count])
        if per_row:  # (row scale x weight scale) first, as rescale_accumulator multiplies
            block.mul_(torch.mul(input_scale[start : start + count], weight_scale, out=row_scales[:count]))
        else:
            block.mul_(scale)
        if bias is not None:
            block.add_(bias)
        y[start : start + count].copy_(block)
    return y


INT_MM_MIN_ROWS = 17  # torch._int_mm on CUDA needs M > 16


def can_use_int_mm(k: int, n: int) -> bool:
    """`torch._int_mm` on CUDA needs K, N multiples of 8 (M <= 16 is padded; on a CPU any shape goes)."""
    return k % 8 == 0 and n % 8 == 0


def int_mm_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor | None, bias: torch.Tensor | None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Tensor-core path: int8 x int8 -> int32 with `torch._int_mm`.

    Under `torch.compile`, Inductor fuses the quantization into the producer of `x`
    and the rescale into the epilogue, so only the int8 GEMM is left as a separate op.
    Eager, the quantization and the rescale are the cache-blocked forms (`*_eager`).
    A short activation on CUDA (the modulation layers run at M = batch) is padded with zero
    rows up to 17: cheaper than widening a [24576, 4096] weight to float on every call.
    oneDNN's CPU `_int_mm` takes any M, so nothing is padded there.
    """
    eager = not torch.compiler.is_compiling()
    quantized, scale = (quantize_input_eager if eager else quantize_input)(x, input_scale, rotation)
    rows = quantized.shape[0]
    if rows < INT_MM_MIN_ROWS and x.device.type != "cpu":
        quantized = torch.nn.functional.pad(quantized, (0, 0, 0, INT_MM_MIN_ROWS - rows))
    accumulator = torch._int_mm(quantized, weight.t())[:rows]
    rescale = rescale_accumulator_eager if eager else rescale_accumulator
    return rescale(accumulator, scale, weight_scale, bias, x.dtype)


def emulated_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor | None, bias: torch.Tensor | None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Integer math carried in float32: exact while |accumulator| < 2**24, then fp32 rounding.

    This is the CPU backend without VNNI (and CUDA's for odd shapes): int8 values
    are exact in float32, so a float32 GEMM of them gives the integer products at fp32
    speed, where CPU `_int_mm` without VNNI is ~17x slower.
    """
    dtype = x.dtype
    x, scale = prepared_input(x, input_scale, rotation)
    return rescale_accumulator(emulated_accumulator(x, weight, scale), scale, weight_scale, bias, dtype)


def emulated_accumulator(x: torch.Tensor, weight: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] float, weight int8 [N, K] -> the integer accumulator [M, N] held in float32."""
    return _integer_valued_activation(x, input_scale) @ weight.float().t()


def reference_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor | None, bias: torch.Tensor | None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Dequantize both operands, then a float64 GEMM: the slow, obviously-right reference for tests."""
    dtype = x.dtype
    x, scale = prepared_input(x, input_scale, rotation)
    x_dequantized = _integer_valued_activation(x, scale).double() * scale.double()
    weight_dequantized = weight.double() * weight_scale.double()[:, None]
    y = x_dequantized @ weight_dequantized.t()
    if bias is not None:
        y = y + bias.double()
    return y.to(dtype)


def emulated_w8a8(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    """The Triton op's math off CUDA: x [M, K] float or already-quantized int8 -> y [M, N] `out_dtype`."""
    accumulator = x.float() @ weight.float().t() if x.dtype == torch.int8 else emulated_accumulator(x, weight, input_scale)
    return rescale_accumulator(accumulator, input_scale, weight_scale, bias, out_dtype)
