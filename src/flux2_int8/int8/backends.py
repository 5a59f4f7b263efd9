"""The INT8 backend table and the `auto` choice: one decision, in one place.

Every backend computes the same math (see `kernels`) with the signature
`(x [M, K], weight int8 [N, K], weight_scale float32 [N], input_scale float32 0-d, [M, 1] or None (dynamic),
bias [N] | None, rotation float32 [G, G] | None) -> y [M, N]` in x's dtype.
The Triton backends reach the custom op `flux2_int8::w8a8_linear` (module `triton_w8a8`),
imported on first use because triton is an optional extra.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import torch

from ..errors import Flux2Int8Error
from .kernels import can_use_int_mm, emulated_linear, emulated_w8a8, int_mm_linear, prepared_input, quantize_activation, quantize_input_eager, reference_linear, rescale_accumulator_eager

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


# oneDNN's int8 linear (the op behind PyTorch 2 Export's x86 quantization) on a weight packed
# once into its VNNI/AMX blocked layout, with the rescale and bias in its epilogue.
ONEDNN_INSTALLED = torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_prepack")
_ZERO_POINTS: dict[int, torch.Tensor] = {}
_UNIT_SCALES: dict[int, torch.Tensor] = {}


def pack_weight_for_onednn(weight: torch.Tensor) -> torch.Tensor:
    """int8 [N, K] -> oneDNN's packed int8 weight (an opaque mkldnn tensor of the same bytes).

    Why we hold a second copy: `torch._int_mm` hands oneDNN the plain [N, K] weight, which
    it re-lays out for AMX/VNNI on every call; with the packed one the eager layer went from
    0.92x / 0.84x of BF16 to 0.62x / 0.76x on klein-9B shapes at M = 512 / 4096 on this
    project's Xeon (geometric means, benchmarks/peers.py, docs/benchmarks.md).
    """
    return torch.ops.onednn.qlinear_prepack(weight, None)


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor | None, bias: torch.Tensor | None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """CPU: oneDNN's int8 GEMM on a packed weight, the same floats as `int_mm` bit for bit.

    `weight` is the packed form (`Int8Linear` keeps it) or a plain int8 one, packed here.
    The input step is `kernels.quantize_input_eager`. Static scales go to oneDNN whole: it
    forms acc · (input_scale · weight_scale) + bias in float32 and casts, exactly as
    `rescale_accumulator` does (for the row counts and CPUs where that holds: see
    `FUSED_EPILOGUE_MIN_ROWS`). oneDNN takes one activation scale per tensor, so for dynamic
    (per-row) scales it returns the integer accumulator as float32 (unit scales: the same
    rounding as `acc.float()`) and the blocked `rescale_accumulator_eager` finishes.
    Where `onednn_serves(x)` says no (tracing, off CPU, a CPU oneDNN has no int8 kernel
    for), this is `int_mm_linear`, whose steps Inductor fuses.
    """
    if not onednn_serves(x):
        return int_mm_linear(x, weight, weight_scale, input_scale, bias, rotation)
    packed = weight if weight.is_mkldnn else pack_weight_for_onednn(weight)
    quantized, scale = quantize_input_eager(x, input_scale, rotation)
    n = weight_scale.shape[0]
    zero_points = _cached(_ZERO_POINTS, n, lambda: torch.zeros(n, dtype=torch.int64))
    if scale.dim() == 0 and quantized.shape[0] >= FUSED_EPILOGUE_MIN_ROWS and _fused_epilogue_is_exact():
        bias32 = None if bias is None else bias.float()
        return torch.ops.onednn.qlinear_pointwise(quantized, float(scale), 0, packed, weight_scale, zero_points, bias32, 1.0, 0, x.dtype, "none", [], "")
    unit = _cached(_UNIT_SCALES, n, lambda: torch.ones(n, dtype=torch.float32))
    accumulator = torch.ops.onednn.qlinear_pointwise(quantized, 1.0, 0, packed, unit, zero_points, None, 1.0, 0, torch.float32, "none", [], "")
    return rescale_accumulator_eager(accumulator, scale, weight_scale, bias, x.dtype)


# oneDNN's kernels for a few rows (M <= 8 seen on an AMX Xeon) apply the two scales one after
# the other, an ulp away from acc * (input_scale * weight_scale); its blocked kernels for more
# rows form that product first, as `rescale_accumulator` does. Those rows are fused in
# oneDNN's epilogue once a probe on this CPU has shown it bit-equal; the others, and every CPU
# where the probe differs, take the unit-scale accumulator and our blocked rescale.
FUSED_EPILOGUE_MIN_ROWS = 16
_PROBE_ROWS = (FUSED_EPILOGUE_MIN_ROWS, FUSED_EPILOGUE_MIN_ROWS + 1, 64, 300)
_PROBE: list[tuple[bool, bool]] = []


def onednn_serves(x: torch.Tensor) -> bool:
    """Whether `onednn_linear` runs oneDNN's op for this input (else it is `int_mm_linear`).

    Eager CPU runs only: while `torch.compile` traces, Inductor fuses `int_mm`'s steps, and a
    packed mkldnn tensor is nothing Dynamo traces. `Int8Linear` asks the same to decide
    whether to hand over its packed weight.
    """
    return x.device.type == "cpu" and not torch.compiler.is_compiling() and onednn_runs()


def onednn_runs() -> bool:
    """Whether oneDNN's int8 linear runs on this CPU (probed once a process; False without the op)."""
    return ONEDNN_INSTALLED and _probe()[0]


def _fused_epilogue_is_exact() -> bool:
    """Whether oneDNN's fused rescale equals `rescale_accumulator` bit for bit here (probed once a process)."""
    return _probe()[1]


def _probe() -> tuple[bool, bool]:
    """(oneDNN's int8 linear runs here, its fused rescale is bit-equal to ours), from a few small products.

    A CPU oneDNN has no int8 kernel for refuses to create the primitive (RuntimeError):
    `auto` then keeps `int_mm`, and a layer set to "onednn" runs `int_mm` too.
    """
    if not _PROBE:
        generator = torch.Generator().manual_seed(0)
        width, outputs = 256, 64
        weight = torch.randint(-128, 128, (outputs, width), dtype=torch.int8, generator=generator)
        weight_scale, bias = torch.rand(outputs, generator=generator) * 1e-3, torch.randn(outputs, generator=generator)
        scale, zero_points = torch.tensor(0.0371), torch.zeros(outputs, dtype=torch.int64)
        try:
            packed = pack_weight_for_onednn(weight)
            exact = True
            for rows in _PROBE_ROWS:  # oneDNN picks its kernel by shape: every row-count regime we fuse
                quantized = torch.randint(-128, 128, (rows, width), dtype=torch.int8, generator=generator)
                fused = torch.ops.onednn.qlinear_pointwise(quantized, float(scale), 0, packed, weight_scale, zero_points, bias, 1.0, 0, torch.float32, "none", [], "")
                exact = exact and torch.equal(fused, rescale_accumulator_eager(torch._int_mm(quantized, weight.t()), scale, weight_scale, bias, torch.float32))
        except RuntimeError:
            _PROBE.append((False, False))
        else:
            _PROBE.append((True, exact))
    return _PROBE[0]


def _cached(cache: dict[int, torch.Tensor], size: int, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    if size not in cache:
        cache[size] = build()
    return cache[size]


def triton_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor | None, bias: torch.Tensor | None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Fused Triton W8A8 GEMM, the activation quantized inside the kernel's load.

    Best where nothing fuses the quantization into the op producing `x` (eager mode):
    x is read once as float, and no int8 copy of it is written. A ConvRot layer's x is
    rotated in the same load (`triton_rotation`); dynamic scales of the rotated x come
    from one small pass that rotates in registers too (`rotated_row_scale`).
    """
    dtype = x.dtype
    if rotation is not None and TRITON_INSTALLED:
        from . import triton_rotation

        scale = triton_rotation.rotated_row_scale(x, rotation) if input_scale is None else input_scale
        return _triton_op(x.device)(x, weight, weight_scale, scale, bias, dtype, rotation)
    x, scale = prepared_input(x, input_scale, rotation)
    return _triton_op(x.device)(x, weight, weight_scale, scale, bias, dtype)


def triton_prequant_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor | None, bias: torch.Tensor | None, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """The same Triton GEMM fed an int8 activation quantized by torch ops.

    Under `torch.compile` Inductor fuses that quantization into the op producing `x`
    (norm, modulation, activation), so the GEMM reads int8 and skips re-quantizing
    each x tile once per output tile; q, k and v share one quantized input. A ConvRot
    layer's x is rotated and quantized in one Triton pass instead (`rotate_quantize`),
    which writes the int8 x the GEMM reads.
    """
    dtype = x.dtype
    if rotation is not None and TRITON_INSTALLED:
        from . import triton_rotation, triton_w8a8

        scale = triton_rotation.rotated_row_scale(x, rotation) if input_scale is None else input_scale
        return triton_w8a8.w8a8_linear(triton_w8a8.rotate_quantize(x, rotation, scale), weight, weight_scale, scale, bias, dtype)
    x, scale = prepared_input(x, input_scale, rotation)
    return _triton_op(x.device)(quantize_activation(x, scale), weight, weight_scale, scale, bias, dtype)


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
    "onednn": onednn_linear,
    "emulated": emulated_linear,
    "reference": reference_linear,
    "triton": triton_linear,
    "triton_prequant": triton_prequant_linear,
}


# A layer of at most this many weights is overhead-bound on a CPU: nano's and tiny's
# (32-576 wide) ran 1.0-1.05x of BF16 emulated, 1.10x on `int_mm` and 1.28-1.40x on `onednn`,
# whose per-call cost is the highest (benchmarks/peers.py --parts models, docs/benchmarks.md).
SMALL_LAYER_WEIGHTS = 1 << 18


def is_small_exact_layer(k: int, n: int) -> bool:
    """Whether the float32 emulation is both exact and the faster CPU choice for a [K] -> [N] layer.

    Exact: |accumulator| <= K · 128 · 128 stays below 2**24, so float32 holds every integer
    and the result is `int_mm`'s bit for bit. Faster: see `SMALL_LAYER_WEIGHTS`.
    """
    return k * 128 * 128 < 2**24 and k * n <= SMALL_LAYER_WEIGHTS


def pick_backend(device: torch.device, k: int, n: int) -> str:
    """The fastest exact backend for a device and a [K] -> [N] layer (the `auto` choice).

    With Triton enabled on CUDA, eager runs quantize inside the GEMM ("triton") and compiled
    runs let Inductor fuse the quantization into the producer ("triton_prequant");
    the kernel masks its edges, so every shape suits it, M <= 16 included. `_int_mm`
    pads short activations itself, so the row count never decides. On a VNNI CPU, eager
    runs take oneDNN's packed-weight GEMM ("onednn"), except layers small enough that
    per-call overhead decides (`is_small_exact_layer`: the float32 emulation, exact there),
    and compiled runs `int_mm`, which Inductor fuses with the quantization and the rescale.
    """
    if device.type == "cuda" and TRITON_IN_AUTO:
        return "triton_prequant" if torch.compiler.is_compiling() else "triton"
    if device.type == "cuda" and can_use_int_mm(k, n):
        return "int_mm"
    if device.type == "cpu" and CPU_HAS_VNNI:
        if torch.compiler.is_compiling():
            return "int_mm"
        if is_small_exact_layer(k, n):
            return "emulated"
        return "onednn" if onednn_runs() else "int_mm"
    return "emulated"
