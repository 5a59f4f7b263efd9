"""Fused W8A8 GEMM in Triton, registered as the custom op `flux2_int8::w8a8_linear`.

    y = (clamp(round(x / input_scale), -128, 127) @ weight.T) * (input_scale * weight_scale) + bias

One kernel does all of it. The activation is either float (bf16/fp16/fp32) and quantized
inside the GEMM's load, so no int8 copy of it goes through device memory, or already int8
(quantized by the producing op, which Inductor fuses under `torch.compile`). The product
is int8 x int8 -> int32 on tensor cores (`tl.dot`), and the epilogue applies the
per-channel rescale, the bias and the cast to the output dtype before the single store:
the int32 [M, N] accumulator `torch._int_mm` writes and reads back never exists.

Quantization matches `torch.round` bit for bit: an IEEE division (`div_rn`, as eager
PyTorch divides), a clamp to [-128, 127], then round-half-to-even by adding and
subtracting 1.5 * 2**23 (exact for |v| < 2**22, and portable to Triton's CPU interpreter,
which has no `rint`).

ConvRot layers pass their rotation (H_G, `rotation=`): each float x tile is then rotated
in registers before that quantization (`triton_rotation`), so rotating costs no extra pass
over x; `triton_rotation.rotated_row_scale` gives the dynamic scales of the rotated x, and
`rotate_quantize` is the alternative of rotating and quantizing once, before the GEMM.

Importing this module needs `triton`; `kernels.py` imports it only when a Triton backend
is used, so the package works without it.
"""

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from .kernels import emulated_w8a8, quantize_activation
from .rotation import rotate
from .triton_rotation import _rotate_tile, rotation_constants

_ROUND_MAGIC = tl.constexpr(12582912.0)  # 1.5 * 2**23: v + magic - magic rounds v half to even (jit globals must be constexpr)
# K is unmasked when every config's BLOCK_K divides it (all klein K are multiples of 256).
_LARGEST_BLOCK_K = 256
# M up to this runs the small-M configs (BLOCK_M 16 or 32), larger M the large-M ones (BLOCK_M >= 64).
_SMALL_M = 32


@triton.jit
def _quantize(x, input_scale):
    """float [BLOCK_M, BLOCK_K] -> int8, as `clamp(round(x / input_scale), -128, 127)`."""
    scaled = tl.math.div_rn(x.to(tl.float32), input_scale)
    clamped = tl.minimum(tl.maximum(scaled, -128.0), 127.0)
    return ((clamped + _ROUND_MAGIC) - _ROUND_MAGIC).to(tl.int8)


@triton.jit
def _w8a8_kernel(
    x_ptr, weight_ptr, weight_scale_ptr, input_scale_ptr, bias_ptr, out_ptr,
    M, N, K, M_BUCKET,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_om, stride_on, rotation_norm,
    QUANTIZE_X: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, PER_ROW_SCALE: tl.constexpr,
    ROTATION_GROUP: tl.constexpr, SYLVESTER: tl.constexpr, SPLITS: tl.constexpr, BF16_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """One [BLOCK_M, BLOCK_N] tile of y. x [M, K] float or int8, weight int8 [N, K], y [M, N].

    Tiles are visited in groups of GROUP_M rows so neighbouring programs share weight
    tiles in L2. Rows and columns past the edge are wrapped (`% M`, `% N`) for the loads,
    which keeps the main loop free of M/N masks; the store is masked instead.
    M_BUCKET is only an autotuning key. ROTATION_GROUP > 0 (ConvRot): each float x tile is
    rotated in registers per group of that many columns before it is quantized
    (`triton_rotation._rotate_tile`; BLOCK_K must be a multiple of it), rotation_norm being
    float32(1 / sqrt(ROTATION_GROUP)); 0: no rotation, the other rotation arguments unused.
    """
    pid = tl.program_id(0)
    # Builtins only (no `tl.cdiv`, `tl.zeros`): triton.language's own @jit helpers cannot run
    # in the CPU interpreter when triton was imported before TRITON_INTERPRET was set.
    tiles_m = (M + BLOCK_M - 1) // BLOCK_M
    tiles_n = (N + BLOCK_N - 1) // BLOCK_N
    group_width = GROUP_M * tiles_n
    first_m = (pid // group_width) * GROUP_M
    group_rows = min(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group_width) % group_rows
    pid_n = (pid % group_width) // group_rows

    # int64 offsets: M * N passes 2**31 at batch 4 and 2048^2 (67584 tokens x 36864).
    offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    rows = offs_m % M
    cols = offs_n % N
    x_ptrs = x_ptr + rows[:, None] * stride_xm + offs_k[None, :] * stride_xk
    w_ptrs = weight_ptr + offs_k[:, None] * stride_wk + cols[None, :] * stride_wn
    if PER_ROW_SCALE:  # dynamic activations: one scale per row (token) of x, [M]
        input_scale = tl.load(input_scale_ptr + rows)[:, None]
    else:  # static activations: one calibrated scale
        input_scale = tl.load(input_scale_ptr)

    acc = tl.full((BLOCK_M, BLOCK_N), 0, dtype=tl.int32)
    for k in range(0, (K + BLOCK_K - 1) // BLOCK_K):
        if EVEN_K:
            x = tl.load(x_ptrs)
            w = tl.load(w_ptrs)
        else:
            k_left = K - k * BLOCK_K
            x = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0)
            w = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0)
        if QUANTIZE_X:
            if ROTATION_GROUP > 0:
                x = _rotate_tile(x, rotation_norm, BLOCK_M, BLOCK_K, ROTATION_GROUP, SYLVESTER, SPLITS, BF16_DOT)
            x = _quantize(x, input_scale)
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk

    weight_scale = tl.load(weight_scale_ptr + cols)
    if PER_ROW_SCALE:
        y = acc.to(tl.float32) * input_scale * weight_scale[None, :]
    else:
        y = acc.to(tl.float32) * (input_scale * weight_scale)[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + cols).to(tl.float32)[None, :]
    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
    tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def _rotate_quantize_kernel(
    x_ptr, input_scale_ptr, out_ptr, M, K, stride_xm, stride_xk, stride_om, stride_ok, rotation_norm,
    PER_ROW_SCALE: tl.constexpr, ROTATION_GROUP: tl.constexpr, SYLVESTER: tl.constexpr, SPLITS: tl.constexpr, BF16_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """int8 [M, K] = quantize(x · blockdiag(H_G)): the rotation and quantization of the GEMM's load, once per element.

    One [BLOCK_M, BLOCK_K] tile per program (a 2-D grid), masked at both edges.
    """
    offs_m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.program_id(1).to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    inside = (offs_m[:, None] < M) & (offs_k[None, :] < K)
    x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk, mask=inside, other=0)
    if PER_ROW_SCALE:
        input_scale = tl.load(input_scale_ptr + offs_m % M)[:, None]
    else:
        input_scale = tl.load(input_scale_ptr)
    rotated = _rotate_tile(x, rotation_norm, BLOCK_M, BLOCK_K, ROTATION_GROUP, SYLVESTER, SPLITS, BF16_DOT)
    tl.store(out_ptr + offs_m[:, None] * stride_om + offs_k[None, :] * stride_ok, _quantize(rotated, input_scale), mask=inside)


def _config(block_m: int, block_n: int, block_k: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8}, num_warps=warps, num_stages=stages)


# Large M (klein runs M = 4096 image and 512 text tokens, 4608 in single blocks at 1024^2;
# N 3072..36864, K 3072..16384): wide N tiles amortize the per-tile quantization of x
# (its ALU cost per MMA falls as 1 / BLOCK_N); the 128x256x128 tiles need Hopper's
# 227 KB of shared memory at 3 stages, the 64-deep K tiles fit Ampere (164 KB A100, 100 KB sm_86).
LARGE_M_CONFIGS = [
    _config(128, 256, 128, 8, 3),
    _config(128, 256, 64, 8, 4),
    _config(256, 128, 64, 8, 3),
    _config(128, 128, 128, 8, 4),
    _config(128, 128, 64, 4, 4),
    _config(64, 256, 128, 4, 3),
    _config(128, 256, 64, 8, 3),
    _config(64, 128, 64, 4, 4),
]
# Small M (modulation and timestep layers run at M = batch): weight-bandwidth bound,
# so narrow N tiles give enough programs to cover every SM and deep K tiles keep loads long.
SMALL_M_CONFIGS = [
    _config(16, 64, 256, 4, 3),
    _config(16, 128, 128, 4, 4),
    _config(32, 64, 256, 4, 3),
    _config(32, 128, 128, 4, 4),
]


# ConvRot at G = 256 needs K tiles of 256 (a tile holds whole groups); no large-M config
# above has them. Only rotated launches use these (and those above whose BLOCK_K is a
# multiple of G). Hopper takes the first three; A100 the fourth, sm_86 the last.
ROTATION_CONFIGS = [
    _config(64, 128, 256, 4, 3),
    _config(64, 256, 256, 8, 2),
    _config(128, 128, 256, 8, 2),
    _config(64, 128, 256, 4, 2),
    _config(64, 64, 256, 4, 2),
]


def shared_memory_bytes(config: triton.Config, x_element_bytes: int) -> int:
    """Shared memory of one config: stages - 1 x tiles, `stages` weight tiles, one int8 x tile.

    Fitted to kernels compiled by Triton 3.9 (`triton.compile`, no GPU needed): exact for
    sm_90 (wgmma keeps one more weight tile), one weight tile above sm_80/sm_86.
    `rotation_bytes` adds what the in-register rotation (ConvRot) stages for its transposes.
    """
    block_m, block_n, block_k = (config.kwargs[name] for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))
    stages = config.num_stages
    return (stages - 1) * block_k * block_m * x_element_bytes + stages * block_k * block_n + block_m * block_k


def rotation_bytes(config: triton.Config) -> int:
    """Shared memory the in-register rotation adds: BLOCK_M x BLOCK_K bytes + 1 KB.

    Fitted to Triton 3.8's sm_90 and sm_80 kernels (bf16 x, G = 64 and 256): exact for
    most configs, up to 16 KB above on sm_90 at G = 256.
    """
    return config.kwargs["BLOCK_M"] * config.kwargs["BLOCK_K"] + 1024


def prune_configs(configs: list[triton.Config], m: int, x_element_bytes: int, shared_memory_limit: int, rotation_group: int = 0) -> list[triton.Config]:
    """The configs that suit this M and the rotation group and fit the device's shared memory (never empty).

    Rotated launches (rotation_group G > 0) keep the configs whose BLOCK_K is a multiple of G,
    `ROTATION_CONFIGS` included; plain ones never take `ROTATION_CONFIGS`.
    """
    if rotation_group:
        configs = [config for config in configs if config.kwargs["BLOCK_K"] % rotation_group == 0]
    else:
        configs = [config for config in configs if all(config is not rotated for rotated in ROTATION_CONFIGS)]
    small = m <= _SMALL_M
    suited = [config for config in configs if (config.kwargs["BLOCK_M"] <= _SMALL_M) == small]

    def size(config: triton.Config) -> int:
        return shared_memory_bytes(config, x_element_bytes) + (rotation_bytes(config) if rotation_group else 0)

    fitting = [config for config in suited if size(config) <= shared_memory_limit]
    return fitting or [min(suited or configs, key=size)]


def _m_bucket(m: int) -> int:
    """Autotuning key for M: tuned once per power of two, so a new resolution rarely re-tunes."""
    return min(triton.next_power_of_2(m), 16384)


_AUTOTUNED: dict[int, triton.runtime.Autotuner] = {}


def _autotuned_kernel(device: torch.device) -> triton.runtime.Autotuner:
    """`_w8a8_kernel` autotuned over the configs that fit this device (one tuner per shared-memory size)."""
    limit = triton.runtime.driver.active.utils.get_device_properties(device.index if device.index is not None else torch.cuda.current_device())["max_shared_mem"]
    if limit not in _AUTOTUNED:

        def early_prune(configs, named_args, **kwargs):  # type: ignore[no-untyped-def]
            return prune_configs(configs, named_args["M"], named_args["x_ptr"].element_size(), limit, kwargs["ROTATION_GROUP"])

        configs = LARGE_M_CONFIGS + SMALL_M_CONFIGS + ROTATION_CONFIGS
        _AUTOTUNED[limit] = triton.autotune(configs, key=["M_BUCKET", "N", "K", "ROTATION_GROUP"], prune_configs_by={"early_config_prune": early_prune})(_w8a8_kernel)
    return _AUTOTUNED[limit]


def launch_w8a8(
    x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None,
    out_dtype: torch.dtype, config: dict[str, int] | None = None, rotation: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Run the kernel: x [M, K] float (quantized in the load) or int8 -> y [M, N] `out_dtype`.

    `config` fixes the tile (keys BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, and optionally
    num_warps, num_stages) instead of autotuning: the CPU interpreter tests and tuning
    experiments use it. weight int8 [N, K], weight_scale float32 [N], input_scale float32
    0-d (static) or [M, 1] (dynamic: one scale per row of x, contiguous). `rotation`
    (ConvRot's H_G, float32 [G, G]): x is float and rotated per group in the load, the
    input_scale is one of the rotated x (`triton_rotation.rotated_row_scale` when dynamic).
    """
    m, k = x.shape
    n = weight.shape[0]
    rotated = _rotation_arguments(x, rotation, config)
    out = torch.empty((m, n), dtype=out_dtype, device=x.device)
    if m == 0:
        return out
    kernel = _w8a8_kernel if config is not None else _autotuned_kernel(x.device)

    def grid(meta):  # type: ignore[no-untyped-def]
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    norm = rotated.pop("norm")
    wrap_triton(kernel)[grid](
        x, weight, weight_scale, input_scale, weight_scale if bias is None else bias, out,
        m, n, k, _m_bucket(m),
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), out.stride(0), out.stride(1), norm,
        QUANTIZE_X=x.dtype != torch.int8, HAS_BIAS=bias is not None, EVEN_K=k % _LARGEST_BLOCK_K == 0, PER_ROW_SCALE=input_scale.dim() > 0,
        **rotated, **(config or {}),
    )  # fmt: skip
    return out


def _rotation_arguments(x: torch.Tensor, rotation: torch.Tensor | None, config: dict[str, int] | None) -> dict[str, object]:
    """The kernel's rotation constants (ROTATION_GROUP 0 and placeholders without a rotation)."""
    if rotation is None:
        return {"ROTATION_GROUP": 0, "SYLVESTER": False, "SPLITS": 1, "BF16_DOT": True, "norm": 1.0}
    if x.dtype == torch.int8:
        raise ValueError("a rotation applies to the float activation; an int8 x is already quantized (rotate before quantizing)")
    constants = rotation_constants(x, rotation)
    if config is not None and config["BLOCK_K"] % constants["GROUP"]:  # type: ignore[operator]
        raise ValueError(f"BLOCK_K {config['BLOCK_K']} must be a multiple of the rotation group {constants['GROUP']}")
    return {"ROTATION_GROUP": constants.pop("GROUP"), **constants}


@triton_op("flux2_int8::w8a8_linear", mutates_args=())
def w8a8_linear(
    x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor, bias: torch.Tensor | None,
    out_dtype: torch.dtype, rotation: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """W8A8 linear as one graph-safe op: x [M, K] float or int8 -> y [M, N] `out_dtype`.

    On CUDA it launches the fused kernel (Inductor sees the Triton kernel itself, so the
    op compiles with `fullgraph=True` and replays in CUDA graphs). Elsewhere it computes
    the same integers with the float32 emulation, so a model using this op still runs,
    traces and compiles on CPU.

    `rotation` (ConvRot, optional): H_G float32 [G, G] (`rotation.hadamard(G)`, G a power
    of 2 from 2 to 256 dividing K); x is then float and multiplied per group of G columns by
    it before the quantization, and `input_scale` is the rotated x's (static: calibrated in
    the rotated basis; dynamic: `triton_rotation.rotated_row_scale`). On CUDA each x tile is
    rotated in registers inside the GEMM's load, the matrix's entries generated from G;
    elsewhere `rotation.rotate` runs first, then the emulation.
    """
    if x.device.type != "cuda":
        if rotation is not None:
            _rotation_arguments(x, rotation, None)  # the same refusals as on CUDA
            x = rotate(x, rotation)
        return emulated_w8a8(x, weight, weight_scale, input_scale, bias, out_dtype)
    return launch_w8a8(x, weight, weight_scale, input_scale, bias, out_dtype, rotation=rotation)


def launch_rotate_quantize(x: torch.Tensor, rotation: torch.Tensor, input_scale: torch.Tensor, config: dict[str, int] | None = None) -> torch.Tensor:
    """Run the pre-pass kernel: x [M, K] float -> int8 [M, K], rotated then quantized (config: BLOCK_M, BLOCK_K, num_warps)."""
    rotated = _rotation_arguments(x, rotation, config)
    m, k = x.shape
    out = torch.empty((m, k), dtype=torch.int8, device=x.device)
    if m == 0:
        return out
    config = dict(config or {"BLOCK_M": 32, "BLOCK_K": max(int(rotated["ROTATION_GROUP"]), 128), "num_warps": 4})  # type: ignore[call-overload]
    norm = rotated.pop("norm")
    grid = (triton.cdiv(m, config["BLOCK_M"]), triton.cdiv(k, config["BLOCK_K"]))
    wrap_triton(_rotate_quantize_kernel)[grid](
        x, input_scale, out, m, k, x.stride(0), x.stride(1), out.stride(0), out.stride(1), norm,
        PER_ROW_SCALE=input_scale.dim() > 0, **rotated, **config,
    )  # fmt: skip
    return out


@triton_op("flux2_int8::rotate_quantize", mutates_args=())
def rotate_quantize(x: torch.Tensor, rotation: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """ConvRot's activation, rotated and quantized once: x [M, K] float -> int8 [M, K].

    The alternative to rotating in the GEMM's load, which repeats the rotation for every N
    tile: one pass (read x, write int8 x_rot), then `w8a8_linear` on the int8 x; the same
    integers as the in-load path, since both run the same rotation and quantization code.
    input_scale: float32 0-d (static, in the rotated basis) or [M, 1] (`rotated_row_scale`).
    Off CUDA: `rotation.rotate`, then `kernels.quantize_activation`.
    """
    if x.device.type != "cuda":
        _rotation_arguments(x, rotation, None)  # the same refusals as on CUDA
        return quantize_activation(rotate(x, rotation), input_scale)
    return launch_rotate_quantize(x, rotation, input_scale)
