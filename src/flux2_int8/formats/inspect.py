"""A summary of a checkpoint for `flux2-int8 inspect`, built from headers only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..variants import architecture_of
from .checkpoint import FLOAT, FP8, INT8, Checkpoint, open_checkpoint
from .config import infer_config
from .keys import split_param
from .scales import SCALE_PARAMS



def describe(path: str | Path) -> dict[str, Any]:
    """Format, variant, linear counts, scale shapes, metadata and size of a checkpoint."""
    checkpoint = open_checkpoint(path)
    return {
        "path": str(checkpoint.path),
        "format": checkpoint.format,
        "layout": checkpoint.layout,
        "variant": _variant(checkpoint),
        "linears": _linear_counts(checkpoint),
        "scale_shapes": _scale_shapes(checkpoint),
        "tensors": len({(s.file, s.key) for s in checkpoint.tensors.values()}),
        "size_bytes": checkpoint.size_bytes,
        "metadata": checkpoint.metadata,
    }


def _variant(checkpoint: Checkpoint) -> str:
    try:
        architecture = architecture_of(infer_config(checkpoint))
    except ConfigError:
        return "unknown (shapes fit no FLUX.2 config)"
    if architecture is None:
        return "other FLUX.2 (not a klein size)"
    return f"{architecture.name} (distilled or base: same shapes)"


def _stored_linears(checkpoint: Checkpoint) -> dict[str, str]:
    """Linear kind per stored weight tensor (a fused BFL q/k/v counts once)."""
    return {checkpoint.tensors[f"{module}.weight"].key: kind for module, kind in checkpoint.linear_kinds.items()}


def _linear_counts(checkpoint: Checkpoint) -> dict[str, int]:
    counts = Counter(_stored_linears(checkpoint).values())
    return {"int8": counts[INT8], "fp8": counts[FP8], "float": counts[FLOAT], "total": sum(counts.values())}


def _scale_shapes(checkpoint: Checkpoint) -> dict[str, dict[str, int]]:
    """How many scales of each shape, with the row count written as N: e.g. {"weight_scale": {"[N, 1]": 80}}."""
    shapes: dict[str, Counter[str]] = {name: Counter() for name in SCALE_PARAMS}
    seen = set()
    for key, source in checkpoint.tensors.items():
        module, param = split_param(key)
        if param not in SCALE_PARAMS or (source.file, source.key) in seen:
            continue
        seen.add((source.file, source.key))
        rows = checkpoint.tensors[f"{module}.weight"].info.shape[0] if f"{module}.weight" in checkpoint.tensors else None
        shapes[param][_generic(source.info.shape, rows)] += 1
    return {name: dict(counter) for name, counter in shapes.items() if counter}


def _generic(shape: tuple[int, ...], rows: int | None) -> str:
    return "[" + ", ".join("N" if d == rows and d != 1 else str(d) for d in shape) + "]"


def format_report(summary: dict[str, Any]) -> str:
    """The human-readable form of `describe`'s result."""
    linears = summary["linears"]
    lines = [
        f"file:         {summary['path']}",
        f"format:       {summary['format']} ({summary['layout']} layout)",
        f"variant:      {summary['variant']}",
        f"linears:      {linears['int8']} int8, {linears['fp8']} fp8, {linears['float']} float ({linears['total']} as stored)",
        f"tensors:      {summary['tensors']}",
        f"size:         {summary['size_bytes'] / 2**30:.3f} GiB ({summary['size_bytes']:,} bytes)",
    ]
    for name, counts in summary["scale_shapes"].items():
        lines.append(f"{name + ':':<14}" + ", ".join(f"{count} x {shape}" for shape, count in sorted(counts.items())))
    if summary["metadata"]:
        lines.append("metadata:")
        lines += [f"  {key}: {_short(value)}" for key, value in sorted(summary["metadata"].items())]
    return "\n".join(lines)


def _short(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."
