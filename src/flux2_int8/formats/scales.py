"""Quantization scales: the shapes a file may store them in, their in-memory form, their values.

One table for all three scales, so validation (from the header) and loading (from the
data) cannot disagree about what a file may hold:

| scale           | stored as                      | held by the layer as |
|-----------------|--------------------------------|----------------------|
| weight_scale    | [N], [N, 1], or one value      | float32 [N]          |
| input_scale     | one value (0-d or [1])         | float32 0-d          |
| pre_quant_scale | [K]                            | float32 [K]          |

N and K are the stored weight's rows and columns (a fused q/k/v has all rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:  # tensor methods only: reading headers (`inspect`) stays torch-free
    import torch

SCALE_PARAMS = ("weight_scale", "input_scale", "pre_quant_scale")
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
_ONE_VALUE: tuple[tuple[int, ...], ...] = ((), (1,))


def stored_shapes(param: str, rows: int, columns: int) -> tuple[tuple[int, ...], ...]:
    """The shapes `param` may have in a file, for a weight stored as [rows, columns]."""
    return {
        "weight_scale": ((rows,), (rows, 1), *_ONE_VALUE),
        "input_scale": _ONE_VALUE,
        "pre_quant_scale": ((columns,),),
    }[param]


def spelled_shapes(param: str, rows: int, columns: int) -> str:
    """`stored_shapes` as an error message says it."""
    return {
        "weight_scale": f"[{rows}], [{rows}, 1] or one value",
        "input_scale": "one value (0-d or [1])",
        "pre_quant_scale": f"[{columns}]",
    }[param]


def check_stored_scale(path: Path, key: str, param: str, dtype: str, shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> None:
    """Raise `CheckpointError` unless a stored scale's dtype and shape fit its weight [N, K]."""
    rows, columns = weight_shape
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(path, f"{param} has dtype {dtype}; expected a float (float32)", tensor=key)
    if shape not in stored_shapes(param, rows, columns):
        raise CheckpointError(path, f"{param} of shape {list(shape)} for weight {list(weight_shape)}; expected {spelled_shapes(param, rows, columns)}", tensor=key)


def canonical_scale(param: str, scale: torch.Tensor, rows: int) -> torch.Tensor:
    """A stored scale -> float32 in the layer's shape (one weight_scale value is broadcast to [rows])."""
    scale = scale.float()
    if param == "weight_scale":
        return scale.reshape(-1).expand(rows).clone() if scale.numel() == 1 else scale.reshape(rows)
    if param == "input_scale":
        return scale.reshape(())
    return scale.reshape(-1)


def check_scale_values(path: Path, key: str, values: torch.Tensor) -> None:
    """Raise `CheckpointError` unless every scale value is finite and positive."""
    values = values.float()
    problems = (
        (values.isnan(), "NaN"),
        (values.isinf(), "infinite"),
        (values == 0, "zero"),
        (values < 0, "negative"),
    )
    for mask, word in problems:
        if bool(mask.any()):
            count = int(mask.sum())
            raise CheckpointError(path, f"{count} of {values.numel()} values are {word}; a scale must be finite and > 0", tensor=key)
