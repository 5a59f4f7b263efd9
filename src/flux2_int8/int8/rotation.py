"""ConvRot's group-wise Hadamard rotation: the matrix, and rotating activations and weights.

A ConvRot layer stores its weight rotated along K in groups of G (W_rot = W · blockdiag(H_G)ᵀ)
and rotates its input the same way at run time (x_rot = x · blockdiag(H_G)), so
x_rot · W_rotᵀ = x · Wᵀ while outlier channels are spread over their group before the
activation is quantized. H_G is orthonormal and symmetric:

- G a power of 4: the *regular* Hadamard matrix, Kronecker powers of
  H4 = [[1,1,1,-1],[1,1,-1,1],[1,-1,1,1],[-1,1,1,1]] over sqrt(G) (every row sums to the same
  value; Sylvester's all-ones column would gather a row's outliers into one channel);
- any other power of 2: Sylvester's construction over sqrt(G), the fallback convert_to_quant
  writes (comfy-kitchen refuses those files; we read them).

Rotations are computed in float32: the quantization that follows rounds to 8 bits, so a
bf16 rotation would add its own rounding on top.
"""

from __future__ import annotations

import math

import torch

_REGULAR_H4 = ((1, 1, 1, -1), (1, 1, -1, 1), (1, -1, 1, 1), (-1, 1, 1, 1))
_SYLVESTER_H2 = ((1, 1), (1, -1))
_CACHE: dict[tuple[str, int, torch.device], torch.Tensor] = {}


def is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def is_power_of_four(value: int) -> bool:
    return is_power_of_two(value) and (value.bit_length() - 1) % 2 == 0


def hadamard_kind(group_size: int) -> str:
    """"regular" for powers of 4, "sylvester" for the other powers of 2 (ValueError otherwise)."""
    if group_size < 2 or not is_power_of_two(group_size):
        raise ValueError(f"a ConvRot group size is a power of 2 of at least 2, not {group_size}")
    return "regular" if is_power_of_four(group_size) else "sylvester"


def hadamard(group_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """H_G, float32 [G, G], orthonormal and symmetric (regular for powers of 4, else Sylvester).

    Built once per (G, device) and shared: callers that store it (a layer's `rotation`
    buffer) take a copy.
    """
    return _construction(hadamard_kind(group_size), group_size, device)


def _construction(kind: str, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal Kronecker power of `kind`'s base matrix of order `size`, cached per device."""
    key = (kind, size, torch.device(device or "cpu"))
    if key not in _CACHE:
        factor = torch.tensor(_REGULAR_H4 if kind == "regular" else _SYLVESTER_H2, dtype=torch.float64)
        matrix = torch.ones(1, 1, dtype=torch.float64)
        while matrix.shape[0] < size:
            matrix = torch.kron(matrix, factor)
        _CACHE[key] = (matrix / math.sqrt(size)).to(device=key[2], dtype=torch.float32)
    return _CACHE[key]


def _radix(group_size: int) -> int:
    """The order of the base matrix H_G is a Kronecker power of: 4 (regular) or 2 (Sylvester)."""
    return 4 if hadamard_kind(group_size) == "regular" else 2


def kronecker_factors(rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H_a, H_b) with H_G = H_a ⊗ H_b, a >= b and a * b = G, read off ConvRot's H_G itself.

    Both constructions are Kronecker powers of one base matrix, so splitting the power in two
    halves is exact (a regular H_256 is H_16 ⊗ H_16, a Sylvester H_128 is H_16 ⊗ H_8), and
    both factors have a positive first entry 1/sqrt of their order: H_b is H_G's top-left
    [b, b] block times sqrt(a), H_a every b-th row and column times sqrt(b). Slicing the
    layer's own buffer (no cache of other tensors) keeps this traceable by `torch.compile`.
    """
    group = rotation.shape[0]
    base = _radix(group)
    small = base ** (round(math.log(group, base)) // 2)
    large = group // small
    return rotation[::small, ::small] * math.sqrt(small), rotation[:small, :small] * math.sqrt(large)


def rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """x [M, K] (any float dtype) -> float32 [M, K]: each group of G columns times ConvRot's H_G.

    `rotation` is the layer's H_G [G, G] (built by `hadamard`; loaders check a stored one with
    `check_rotation_matrix`). Up to `_DIRECT_UP_TO` it is one GEMM of [M·K/G, G] by [G, G]
    (a view, no copy beyond the float32 upcast). Beyond, the product goes through the
    Kronecker factors, x_g · (H_a ⊗ H_b) = H_a · X_g · H_b with X_g the group as an [a, b]
    matrix: 2(a + b) flops an element instead of 2G (64 against 512 at G = 256); with it the
    rotated CPU layer went from up to 2.5x of the plain one to 1.01x / 1.19x (dynamic / static,
    benchmarks/convrot_linear.py, docs/kernels.md). The float32 sums are reassociated, nothing
    else changes (test_rotation checks both against float64).
    """
    group = rotation.shape[0]
    rows, width = x.shape
    x = x.float()
    if torch.compiler.is_compiling():
        return _butterfly(x, group)
    if group <= _DIRECT_UP_TO:
        return torch.mm(x.reshape(rows * (width // group), group), rotation).reshape(rows, width)
    outer, inner = kronecker_factors(rotation)
    a, b = outer.shape[0], inner.shape[0]
    right = torch.mm(x.reshape(-1, b), inner)  # X_g · H_b for every group, [M·K/b, b]
    by_column = right.reshape(-1, a, b).transpose(0, 1).reshape(a, -1)  # the groups side by side, [a, M·K/a]
    return torch.mm(outer, by_column).reshape(a, -1, b).transpose(0, 1).reshape(rows, width)  # H_a · (X_g · H_b)


def _butterfly(x: torch.Tensor, group: int) -> torch.Tensor:
    """x [M, K] float32 times blockdiag(H_G) as a fast Walsh-Hadamard transform: what `torch.compile` traces.

    H_G is a Kronecker power of one base matrix, so it is applied one base-4 (regular) or
    base-2 (Sylvester) digit of the column index at a time, with additions only: for H4,
    y_i = s - 2·x_(3-i) with s the sum of the four; for H2, (a + b, a - b); then the 1/sqrt(G).
    Traced as pointwise ops, Inductor fuses the rotation with the producer of x and with the
    quantization after it, where a GEMM would be an opaque call between them.
    """
    rows, width = x.shape
    radix = _radix(group)
    span = 1
    while span < group:
        parts = x.reshape(rows, width // (radix * span), radix, span).unbind(2)
        if radix == 4:
            total = parts[0] + parts[1] + parts[2] + parts[3]
            x = torch.stack([total - 2 * parts[3 - i] for i in range(4)], dim=2)
        else:
            x = torch.stack([parts[0] + parts[1], parts[0] - parts[1]], dim=2)
        x = x.reshape(rows, width)
        span *= radix
    return x * (1.0 / math.sqrt(group))


# Groups up to this size rotate by one GEMM with H_G; larger ones through its Kronecker factors.
_DIRECT_UP_TO = 64


def rotate_weight(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """float [N, K] -> float32 [N, K] rotated along K (W · blockdiag(H)ᵀ; H is symmetric)."""
    return rotate(weight.float(), hadamard(group_size, weight.device))


def check_rotation_matrix(matrix: torch.Tensor) -> str | None:
    """Why a stored rotation [G, G] is not ConvRot's H_G (None when it is, to float32 rounding)."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        return f"a rotation must be a square [G, G] matrix, not {list(matrix.shape)}"
    group = matrix.shape[0]
    try:
        expected = hadamard(group, matrix.device)
    except ValueError as error:
        return str(error)
    if not torch.allclose(matrix.float(), expected, rtol=0, atol=1e-6):
        return f"the [{group}, {group}] rotation is not ConvRot's {hadamard_kind(group)} Hadamard matrix (a learned or random rotation, QuaRot/QuIP style, which flux2-int8 does not run)"
    return None
