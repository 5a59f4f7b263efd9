"""A summary of a checkpoint for `flux2-int8 inspect`, built from headers only.

`describe` tells the truth the loader would: it runs the loader's structural validation
(`validate.check_structure`) on the header, so a file the loader refuses raises the same
one-line error here, and a file that is not ours to run (a LoRA, NVFP4, torchao, ...)
is described as what it is (`foreign.recognise`) with what to do. Neither torch nor
diffusers is imported on this path, so it answers in milliseconds on any file size;
only `check_values` (`inspect --check-values`) reads tensor data, the scales alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..variants import architecture_of
from .checkpoint import FLOAT, FP8, INT8, Checkpoint, TensorKind, checkpoint_from_headers, read_headers
from .config import infer_config
from .foreign import ForeignFile, recognise
from .header import SafetensorsHeader
from .keys import split_param
from .scales import SCALE_PARAMS, check_scale_values
from .text_encoder import describe_text_encoder, is_text_encoder_file
from .validate import check_structure


def describe(path: str | Path, check_values: bool = False) -> dict[str, Any]:
    """Format, variant, linear counts, scale shapes, metadata and size of a checkpoint.

    A foreign file gives `loadable: False` with `kind`, `summary` and `advice` (and
    `lora` for adapters); a structural defect raises the loader's `CheckpointError`.
    `check_values` also reads every scale and raises on NaN, infinite, zero or negative ones.
    """
    path, headers, config = read_headers(path)
    if is_text_encoder_file(headers):
        return describe_text_encoder(headers[0])
    foreign = recognise(headers, config)
    if foreign is not None and not foreign.runnable:
        return _describe_foreign(path, headers, foreign)
    checkpoint = checkpoint_from_headers(path, headers, config)
    check_structure(checkpoint)
    summary = {
        "path": str(checkpoint.path),
        "format": checkpoint.format,
        "layout": checkpoint.layout,
        "loadable": True,
        "variant": _variant(checkpoint, foreign),
        "linears": _linear_counts(checkpoint),
        "scale_shapes": _scale_shapes(checkpoint),
        "rotation": _rotation(checkpoint),
        "tensors": len({(s.file, s.key) for s in checkpoint.tensors.values()}),
        "size_bytes": checkpoint.size_bytes,
        "metadata": checkpoint.metadata,
    }
    if foreign is not None:
        summary["note"] = foreign.advice
    if check_values:
        summary["scales_checked"] = check_scale_data(checkpoint)
    return summary


def _describe_foreign(path: Path, headers: list[SafetensorsHeader], foreign: ForeignFile) -> dict[str, Any]:
    metadata: dict[str, str] = {}
    for header in headers:
        metadata.update(header.metadata)
    return {
        "path": str(path),
        "format": foreign.kind,
        "loadable": False,
        "summary": foreign.summary,
        "advice": foreign.advice,
        "error": f"{path}: {foreign.message()}",
        "lora": asdict(foreign.lora) if foreign.lora else None,
        "tensors": sum(len(h.tensors) for h in headers),
        "size_bytes": sum(h.file_size for h in headers),
        "metadata": metadata,
    }


def check_scale_data(checkpoint: Checkpoint) -> int:
    """Read every stored scale and check its values (`scales.check_scale_values`); returns how many.

    The only part of `inspect` that reads tensor data: a few bytes per layer.
    """
    from safetensors import safe_open

    items = [item for item in checkpoint.load_items() if item.kind is TensorKind.SCALE]
    for file in sorted({item.file for item in items}):
        with safe_open(str(file), framework="pt") as handle:
            for item in (i for i in items if i.file == file):
                check_scale_values(checkpoint.path, item.source_key, handle.get_tensor(item.source_key))
    return len(items)


def _variant(checkpoint: Checkpoint, foreign: ForeignFile | None) -> str:
    if foreign is not None:
        return foreign.summary
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


def _rotation(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """ConvRot layers as stored (a fused q/k/v counts once): how many, their group sizes and Hadamard kinds."""
    stored = {checkpoint.tensors[f"{module}.weight"].key: group for module, group in checkpoint.rotations.items()}
    if not stored:
        return None
    groups = Counter(stored.values())
    kinds = Counter("regular" if (group.bit_length() - 1) % 2 == 0 else "sylvester" for group in stored.values())
    return {
        "kind": "convrot",
        "layers": len(stored),
        "of_int8": _linear_counts(checkpoint)["int8"],
        "group_sizes": {str(group): count for group, count in sorted(groups.items())},
        "hadamard": dict(sorted(kinds.items())),
    }


def _rotation_line(rotation: dict[str, Any]) -> str:
    groups = ", ".join(f"group {group}: {count}" for group, count in rotation["group_sizes"].items())
    kinds = " and ".join(f"{kind} Hadamard" if len(rotation["hadamard"]) == 1 else f"{count} {kind}" for kind, count in rotation["hadamard"].items())
    return f"rotation:     convrot, {rotation['layers']} of {rotation['of_int8']} int8 linears ({groups}; {kinds})"


def _generic(shape: tuple[int, ...], rows: int | None) -> str:
    return "[" + ", ".join("N" if d == rows and d != 1 else str(d) for d in shape) + "]"


def format_report(summary: dict[str, Any]) -> str:
    """The human-readable form of `describe`'s result."""
    if not summary["loadable"]:
        return _foreign_report(summary)
    linears = summary["linears"]
    lines = [
        f"file:         {summary['path']}",
        f"format:       {summary['format']} ({summary['layout']} layout)",
        f"variant:      {summary['variant']}",
        f"linears:      {linears['int8']} int8, {linears['fp8']} fp8, {linears['float']} float ({linears['total']} as stored)",
        f"tensors:      {summary['tensors']}",
        f"size:         {_size(summary['size_bytes'])}",
    ]
    if summary.get("rotation"):
        lines.append(_rotation_line(summary["rotation"]))
    for name, counts in summary["scale_shapes"].items():
        lines.append(f"{name + ':':<14}" + ", ".join(f"{count} x {shape}" for shape, count in sorted(counts.items())))
    if "scales_checked" in summary:
        lines.append(f"scale values: {summary['scales_checked']} scales read, all finite and > 0")
    if "note" in summary:
        lines.append(f"note:         {summary['note']}")
    return "\n".join(lines + _metadata_lines(summary["metadata"]))


def _foreign_report(summary: dict[str, Any]) -> str:
    lines = [
        f"file:         {summary['path']}",
        f"format:       {summary['format']} (not loadable by flux2-int8)",
        f"what:         {summary['summary']}",
        f"what to do:   {summary['advice']}",
        f"tensors:      {summary['tensors']}",
        f"size:         {_size(summary['size_bytes'])}",
    ]
    return "\n".join(lines + _metadata_lines(summary["metadata"]))


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 2**30:.3f} GiB ({size_bytes:,} bytes)"


def _metadata_lines(metadata: dict[str, str]) -> list[str]:
    if not metadata:
        return []
    return ["metadata:"] + [f"  {key}: {_short(value)}" for key, value in sorted(metadata.items())]


def _short(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."
