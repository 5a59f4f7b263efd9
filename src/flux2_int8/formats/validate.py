"""Checks that a checkpoint's quantized layers are complete and their scales usable.

Structure (which scales exist, their shapes and dtypes) is checked here from the header
before anything loads; values (NaN, zero, negative, infinite) as each scale is read
(`LoadItem.convert`). Both take their rules from `scales`. Every error names the file,
the tensor as the file spells it, and what was expected.
"""

from __future__ import annotations

from ..errors import CheckpointError
from .checkpoint import FLOAT, INT8, Checkpoint, SourceTensor
from .foreign import ROTATION_PARAM
from .keys import split_param
from .scales import SCALE_PARAMS, check_stored_scale


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
    _check_rotations(checkpoint)


def _refuse_scales_on_float(checkpoint: Checkpoint, weight: SourceTensor, scales: dict[str, SourceTensor | None]) -> None:
    present = [p for p, source in scales.items() if source is not None]
    if present:
        raise CheckpointError(
            checkpoint.path,
            f"a {weight.info.dtype} weight carries quantization scales ({', '.join(present)}); a quantized weight must be int8 or float8_e4m3fn",
            tensor=weight.key,
        )


def _check_quantized(checkpoint: Checkpoint, kind: str, weight: SourceTensor, scales: dict[str, SourceTensor | None]) -> None:
    # input_scale is optional: without it (ComfyUI's INT8 files) activations are quantized per token at run time.
    if scales["weight_scale"] is None:
        raise CheckpointError(checkpoint.path, f"{weight.info.dtype} weight without weight_scale", tensor=weight.key)
    for param, source in scales.items():
        if source is not None:
            # As stored: a fused q/k/v and its scales have all rows.
            check_stored_scale(checkpoint.path, source.key, param, source.info.dtype, source.info.shape, weight.info.shape)


def _refuse_orphan_scales(checkpoint: Checkpoint) -> None:
    for key, source in checkpoint.tensors.items():
        module, param = split_param(key)
        if param in SCALE_PARAMS and module not in checkpoint.linear_kinds:
            raise CheckpointError(checkpoint.path, f"{param} without a weight beside it", tensor=source.key)


def _check_rotations(checkpoint: Checkpoint) -> None:
    """A ConvRot layer is INT8, its group size a power of 2 (>= 2) dividing K, a stored matrix [G, G] float."""
    for module, group in checkpoint.rotations.items():
        weight = checkpoint.tensors.get(f"{module}.weight")
        stored = checkpoint.tensors.get(f"{module}.{ROTATION_PARAM}")
        where = (stored or weight).key if (stored or weight) else module
        if weight is None or checkpoint.linear_kinds.get(module) != INT8:
            raise CheckpointError(checkpoint.path, "a ConvRot rotation on a layer whose weight is not int8; ConvRot is an INT8 layout", tensor=where)
        columns = weight.info.shape[1]
        if group < 2 or group & (group - 1) or columns % group:
            raise CheckpointError(checkpoint.path, f"ConvRot group size {group} for a weight of {columns} columns; expected a power of 2 that divides {columns}", tensor=where)
        if stored is not None and (stored.info.shape != (group, group) or stored.info.dtype not in ("F32", "F64")):
            raise CheckpointError(checkpoint.path, f"rotation of shape {list(stored.info.shape)} and dtype {stored.info.dtype}; expected float32 [{group}, {group}]", tensor=stored.key)


__all__ = ["check_structure"]
