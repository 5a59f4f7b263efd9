"""Checks that a checkpoint's quantized layers are complete and their scales usable.

Structure (which scales exist, their shapes and dtypes) is checked from the header
before anything loads; values (NaN, zero, negative, infinite) as each scale is read.
Every error names the file, the tensor as the file spells it, and what was expected.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .checkpoint import FLOAT, FP8, INT8, Checkpoint, SourceTensor
from .keys import split_param

SCALE_PARAMS = ("weight_scale", "input_scale", "pre_quant_scale")
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
_ONE_VALUE = ((), (1,))


def check_structure(checkpoint: Checkpoint) -> None:
    """Raise `CheckpointError` for a missing, misplaced or misshapen scale."""
    for module, kind in checkpoint.linear_kinds.items():
        weight = checkpoint.tensors[f"{module}.weight"]
        scales = {p: checkpoint.tensors.get(f"{module}.{p}") for p in SCALE_PARAMS}
        if kind == FLOAT:
            _refuse_scales_on_float(checkpoint, weight, scales)
        else:
            _check_quantized(checkpoint, kind, weight, scales)
    _refuse_orphan_scales(checkpoint)


def _refuse_scales_on_float(checkpoint: Checkpoint, weight: SourceTensor, scales: dict[str, SourceTensor | None]) -> None:
    present = [p for p, source in scales.items() if source is not None]
    if present:
        raise CheckpointError(
            checkpoint.path,
            f"a {weight.info.dtype} weight carries quantization scales ({', '.join(present)}); a quantized weight must be int8 or float8_e4m3fn",
            tensor=weight.key,
        )


def _check_quantized(checkpoint: Checkpoint, kind: str, weight: SourceTensor, scales: dict[str, SourceTensor | None]) -> None:
    rows, columns = weight.info.shape  # as stored: a fused q/k/v and its scales have all rows
    expected = {"weight_scale": ((rows,), (rows, 1), *_ONE_VALUE), "input_scale": _ONE_VALUE, "pre_quant_scale": ((columns,),)}
    spelled = {"weight_scale": f"[{rows}], [{rows}, 1] or one value", "input_scale": "one value (0-d or [1])", "pre_quant_scale": f"[{columns}]"}
    required = ("weight_scale", "input_scale") if kind == INT8 else ("weight_scale",)
    for param in required:
        if scales[param] is None:
            why = " (static W8A8 needs the calibrated activation scale)" if param == "input_scale" else ""
            raise CheckpointError(checkpoint.path, f"{weight.info.dtype} weight without {param}{why}", tensor=weight.key)
    for param, source in scales.items():
        if source is None:
            continue
        if source.info.dtype not in _FLOAT_DTYPES:
            raise CheckpointError(checkpoint.path, f"{param} has dtype {source.info.dtype}; expected a float (float32)", tensor=source.key)
        if source.info.shape not in expected[param]:
            raise CheckpointError(
                checkpoint.path,
                f"{param} of shape {list(source.info.shape)} for weight {list(weight.info.shape)}; expected {spelled[param]}",
                tensor=source.key,
            )


def _refuse_orphan_scales(checkpoint: Checkpoint) -> None:
    for key, source in checkpoint.tensors.items():
        module, param = split_param(key)
        if param in SCALE_PARAMS and module not in checkpoint.linear_kinds:
            raise CheckpointError(checkpoint.path, f"{param} without a weight beside it", tensor=source.key)


def check_scale_values(checkpoint: Checkpoint, source: SourceTensor, values: torch.Tensor) -> None:
    """Raise `CheckpointError` unless every scale value is finite and positive."""
    values = values.float()
    problems = (
        (torch.isnan(values), "NaN"),
        (torch.isinf(values), "infinite"),
        (values == 0, "zero"),
        (values < 0, "negative"),
    )
    for mask, word in problems:
        if bool(mask.any()):
            count = int(mask.sum())
            raise CheckpointError(
                checkpoint.path,
                f"{count} of {values.numel()} values are {word}; a scale must be finite and > 0",
                tensor=source.key,
            )


__all__ = ["FLOAT", "FP8", "INT8", "SCALE_PARAMS", "check_scale_values", "check_structure"]
