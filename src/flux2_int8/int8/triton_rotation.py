"""ConvRot's group-wise Hadamard rotation inside Triton kernels, and the rotated row scales.

A ConvRot layer quantizes x_rot = x · blockdiag(H_G) (`rotation.rotate`), G a power of 2
from 2 to 256. Here each x tile is rotated in registers, so no rotated copy of x goes
through memory:

- **The matrix is generated, not read.** H_G's entries are ±1/sqrt(G); the kernels build
  the ±1 signs from the row and column indices (Sylvester: (-1)^popcount(i & j); regular:
  one -1 per base-4 digit pair summing to 3, H4 = [[1,1,1,-1],[1,1,-1,1],[1,-1,1,1],[-1,1,1,1]])
  and multiply by 1/sqrt(G) once at the end. `rotation.hadamard` builds the same matrices
  by Kronecker powers, whose entry (i, j) is the product of the base factor's entries over
  the digits of i and j; the tests check every G against it.
- **G > 16 as two 16-wide products.** H_G = H_{G/16} ⊗ H_16 (both Kronecker powers of the
  same factor), so a group viewed as a [G/16, 16] matrix X rotates as H_{G/16} · X · H_16:
  one [rows, 16] x [16, 16] `tl.dot` for the inner factor, a transpose, one for the outer
  factor (block-diagonal when G/16 < 16). That is 32 multiply-adds per element instead of G,
  and the matrices are 16 x 16 (a dense 256 x 256 one would not fit shared memory beside
  the GEMM's pipeline). G <= 16 is one product with blockdiag(H_G) as a 16 x 16 matrix.
- **Precision: bf16 tensor-core products, exact.** The ±1 signs are exact in bf16, and a
  float32 operand is split into bf16 parts (hi + mid + lo: 3 x 8 mantissa bits cover
  float32's 24), so every product is exact and only the float32 accumulation rounds: the
  rotated value is within a few float32 ulps of float64 math, like `rotation.rotate`'s
  float32 GEMM. A bf16 x is its own hi part (one product), fp16 needs two. The alternative,
  `input_precision="ieee"` on float32 operands, runs on the CUDA cores (FMA) at a fraction of
  the tensor cores' rate; `"tf32"` would round x to 10 mantissa bits before the 8-bit
  quantization and flip integers.

Importing this module needs `triton` (as `triton_w8a8`, which uses it).
"""

import math

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from .kernels import row_scale
from .rotation import hadamard_kind, rotate

MAX_GROUP = 256  # two 16-wide factors; every ConvRot file seen uses G <= 256
_FACTOR = 16  # the width of one tl.dot factor (tensor-core products need K >= 16)
_SPLITS = {torch.bfloat16: 1, torch.float16: 2, torch.float32: 3}  # bf16 parts that hold a value of each dtype exactly


@triton.jit
def _sign_matrix(BLOCK: tl.constexpr, SYLVESTER: tl.constexpr):
    """bf16 [16, 16]: blockdiag of the unnormalized H_BLOCK (±1 on the blocks, 0 off them), BLOCK <= 16."""
    i = tl.arange(0, 16)[:, None]
    j = tl.arange(0, 16)[None, :]
    a = i % BLOCK
    b = j % BLOCK
    if SYLVESTER:
        bits = a & b
        odd = (bits ^ (bits >> 1) ^ (bits >> 2) ^ (bits >> 3)) & 1
    else:  # regular: H4's -1 entries are where the two base-4 digits sum to 3
        odd = (((a & 3) + (b & 3)) == 3).to(tl.int32) ^ ((((a >> 2) & 3) + ((b >> 2) & 3)) == 3).to(tl.int32)
    sign = 1.0 - 2.0 * odd.to(tl.float32)
    return tl.where((i // BLOCK) == (j // BLOCK), sign, 0.0).to(tl.bfloat16)


@triton.jit
def _part_dot(part, signs, acc, BF16_DOT: tl.constexpr):
    """acc + part @ signs, both bf16: on the tensor cores, or (Triton's CPU interpreter, whose bf16 dot is
    wrong) as float32 IEEE products of the same bf16 values, which are the same exact products."""
    if BF16_DOT:
        return tl.dot(part, signs, acc, out_dtype=tl.float32)
    return tl.dot(part.to(tl.float32), signs.to(tl.float32), acc, input_precision="ieee", out_dtype=tl.float32)


@triton.jit
def _exact_dot(a, signs, SPLITS: tl.constexpr, BF16_DOT: tl.constexpr):
    """float32 [R, 16] @ bf16 signs [16, 16] -> float32: `a` split into SPLITS bf16 parts, each product exact."""
    hi = a.to(tl.bfloat16)
    acc = _part_dot(hi, signs, tl.full(a.shape, 0.0, dtype=tl.float32), BF16_DOT)
    if SPLITS > 1:
        rest = a - hi.to(tl.float32)  # exact: hi is `a` rounded to 8 bits
        mid = rest.to(tl.bfloat16)
        acc = _part_dot(mid, signs, acc, BF16_DOT)
        if SPLITS > 2:
            acc = _part_dot((rest - mid.to(tl.float32)).to(tl.bfloat16), signs, acc, BF16_DOT)
    return acc


@triton.jit
def _rotate_tile(x, norm, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr, SYLVESTER: tl.constexpr, SPLITS: tl.constexpr, BF16_DOT: tl.constexpr):
    """float [BLOCK_M, BLOCK_K] -> float32, each run of GROUP columns times H_GROUP (GROUP divides BLOCK_K).

    `norm` is float32(1 / sqrt(GROUP)); SPLITS the bf16 parts that hold x exactly (1 for bf16).
    """
    ROWS: tl.constexpr = BLOCK_M * BLOCK_K // 16
    if GROUP <= 16:
        y = _exact_dot(tl.reshape(x.to(tl.float32), (ROWS, 16)), _sign_matrix(GROUP, SYLVESTER), SPLITS, BF16_DOT)
    else:
        OUTER: tl.constexpr = GROUP // 16
        GROUPS: tl.constexpr = BLOCK_M * BLOCK_K // GROUP
        y = _exact_dot(tl.reshape(x.to(tl.float32), (ROWS, 16)), _sign_matrix(16, SYLVESTER), SPLITS, BF16_DOT)  # X · H_16
        y = tl.reshape(tl.permute(tl.reshape(y, (GROUPS, OUTER, 16)), (0, 2, 1)), (ROWS, 16))
        y = _exact_dot(y, _sign_matrix(OUTER, SYLVESTER), 3, BF16_DOT)  # H_{G/16} · (X · H_16), on the transpose
        y = tl.reshape(tl.permute(tl.reshape(y, (GROUPS, 16, OUTER)), (0, 2, 1)), (ROWS, 16))
    return tl.reshape(y, (BLOCK_M, BLOCK_K)) * norm


@triton.jit
def _larger(a, b):
    """The combine function of the row max: `tl.max` itself is a triton.language @jit helper,
    which the CPU interpreter cannot run when triton was imported before TRITON_INTERPRET was set."""
    return tl.maximum(a, b)


@triton.jit
def _rotated_row_scale_kernel(
    x_ptr, scale_ptr, M, K, stride_xm, stride_xk, norm,
    GROUP: tl.constexpr, SYLVESTER: tl.constexpr, SPLITS: tl.constexpr, BF16_DOT: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """scale [M] float32 = max |x_rot| over each row / 127 (an all-zero row: 1), x read once."""
    offs_m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + (offs_m % M)[:, None] * stride_xm + offs_k[None, :] * stride_xk
    amax = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)
    nan = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)  # 1 where a row held a NaN: a max reduction drops them, torch's amax keeps them
    for k in range(0, (K + BLOCK_K - 1) // BLOCK_K):
        if EVEN_K:
            x = tl.load(x_ptrs)
        else:
            x = tl.load(x_ptrs, mask=offs_k[None, :] < K - k * BLOCK_K, other=0)
        rotated = _rotate_tile(x, norm, BLOCK_M, BLOCK_K, GROUP, SYLVESTER, SPLITS, BF16_DOT)
        amax = tl.maximum(amax, tl.reduce(tl.abs(rotated), 1, _larger))
        nan = tl.maximum(nan, tl.reduce((rotated != rotated).to(tl.float32), 1, _larger))
        x_ptrs += BLOCK_K * stride_xk
    scale = tl.where(amax > 0, tl.math.div_rn(amax, 127.0), 1.0)  # 127: kernels.INT8_MAX, row_scale's rule
    scale = tl.where(nan > 0, float("nan"), scale)  # a NaN row keeps a NaN scale (and a NaN output), as row_scale
    tl.store(scale_ptr + offs_m, scale, mask=offs_m < M)


# Triton's CPU interpreter (TRITON_INTERPRET=1 when the kernels were defined) computes bf16 dots wrongly.
INTERPRETED = type(_rotated_row_scale_kernel).__name__ == "InterpretedFunction"


def rotation_constants(x: torch.Tensor, rotation: torch.Tensor) -> dict[str, object]:
    """The kernels' rotation arguments for x [M, K] and a ConvRot `rotation` [G, G] (ValueError if unsupported)."""
    if rotation.dim() != 2 or rotation.shape[0] != rotation.shape[1]:
        raise ValueError(f"rotation must be a square [G, G] matrix, not {list(rotation.shape)}")
    group = rotation.shape[0]
    kind = hadamard_kind(group)
    if group > MAX_GROUP or x.shape[-1] % group:
        raise ValueError(f"the Triton kernels rotate groups of 2 to {MAX_GROUP} columns dividing K; G = {group}, K = {x.shape[-1]}")
    if x.dtype not in _SPLITS:
        raise ValueError(f"a rotated input must be bfloat16, float16 or float32, not {x.dtype}")
    return {"GROUP": group, "SYLVESTER": kind == "sylvester", "SPLITS": _SPLITS[x.dtype], "BF16_DOT": not INTERPRETED, "norm": 1.0 / math.sqrt(group)}


def launch_rotated_row_scale(x: torch.Tensor, rotation: torch.Tensor, config: dict[str, int] | None = None) -> torch.Tensor:
    """Run the row-scale kernel: x [M, K] float -> float32 [M, 1] (config: BLOCK_M, BLOCK_K, num_warps)."""
    constants = rotation_constants(x, rotation)
    m, k = x.shape
    scale = torch.empty((m, 1), dtype=torch.float32, device=x.device)  # not a view: a custom op returns fresh tensors
    if m == 0:
        return scale
    group = constants["GROUP"]
    config = dict(config or {"BLOCK_M": 32, "BLOCK_K": max(int(group), 128), "num_warps": 4})  # type: ignore[call-overload]
    if config["BLOCK_K"] % group:
        raise ValueError(f"BLOCK_K {config['BLOCK_K']} must be a multiple of the rotation group {group}")
    norm = constants.pop("norm")
    wrap_triton(_rotated_row_scale_kernel)[(triton.cdiv(m, config["BLOCK_M"]),)](
        x, scale, m, k, x.stride(0), x.stride(1), norm, EVEN_K=k % config["BLOCK_K"] == 0, **constants, **config,
    )  # fmt: skip
    return scale


@triton_op("flux2_int8::rotated_row_scale", mutates_args=())
def rotated_row_scale(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Dynamic activations of a ConvRot layer: `row_scale(rotate(x, rotation))`, float32 [M, 1].

    On CUDA one kernel reads x once and rotates each tile in registers (no rotated copy of x
    is written); `rotation` must be ConvRot's H_G (`rotation.hadamard`), whose entries the
    kernel generates from G. Elsewhere: `rotation.rotate`, then `kernels.row_scale`.
    The scale rule is row_scale's: max |x_rot| / 127 (IEEE division), an all-zero row 1.
    """
    if x.device.type != "cuda":
        rotation_constants(x, rotation)  # the same refusals as on CUDA
        return row_scale(rotate(x, rotation))
    return launch_rotated_row_scale(x, rotation)

