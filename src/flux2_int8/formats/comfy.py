"""ComfyUI's quantization markers: what ComfyUI core and ComfyUI-INT8-Fast read to load a layer.

ComfyUI's mixed-precision loader decides each linear's layout from a `<layer>.comfy_quant`
tensor, a uint8 vector holding a JSON object (`{"format": "int8_tensorwise", ...}`) that it
decodes with `json.loads(tensor.numpy().tobytes())`; the safetensors header may carry the
same map as `_quantization_metadata` = `{"format_version": "1.0", "layers": {...}}`.
convert_to_quant (the community converter) writes both: for row-wise INT8 the marker says
`{"format": "int8_tensorwise", "per_row": true}`, the header entry `{"format":
"int8_tensorwise"}`, with `json.dumps`' default spacing, and a float32 `weight_scale` [N, 1].
We write exactly that, so our calibrated files load in ComfyUI, and keep our static
`input_scale` beside it (ComfyUI quantizes activations per token and ignores it).

ConvRot layers (ComfyUI reads them natively; convert_to_quant `--convrot` writes them) say so
in the same marker: `{"format": "int8_tensorwise", "convrot": true, "convrot_groupsize": G,
"per_row": true}`, the weight stored rotated along K in groups of G (see `int8.rotation`).

Header-level facts only (no torch): the writer turns `marker_bytes` into a tensor.
"""

from __future__ import annotations

import json

COMFY_MARKER = "comfy_quant"
QUANTIZATION_METADATA = "_quantization_metadata"
METADATA_VERSION = "1.0"
INT8_TENSORWISE = "int8_tensorwise"
# The marker of a per-channel INT8 layer, as convert_to_quant `--int8 --comfy_quant --scaling_mode row` writes it.
INT8_PER_ROW_MARKER = {"format": INT8_TENSORWISE, "per_row": True}


# convert_to_quant's default group size when a ConvRot marker names none.
CONVROT_DEFAULT_GROUP_SIZE = 256


def convrot_marker(group_size: int, per_row: bool = True) -> dict:
    """A ConvRot layer's marker, keys in the order ComfyUI's writers put them."""
    marker: dict = {"format": INT8_TENSORWISE, "convrot": True, "convrot_groupsize": group_size}
    if per_row:
        marker["per_row"] = True
    return marker


def convrot_group_size(layout: dict) -> int | None:
    """G of a ConvRot INT8 layout (`convrot: true`), None for any other layout.

    A group size that is not an integer is returned as 0, which validation refuses by name.
    """
    if not isinstance(layout, dict) or layout.get("convrot") is not True:
        return None
    group = layout.get("convrot_groupsize", CONVROT_DEFAULT_GROUP_SIZE)
    return group if isinstance(group, int) and not isinstance(group, bool) else 0


def is_convrot_layout(layout: dict) -> bool:
    """Whether a layout is ConvRot INT8, the rotation flux2-int8 runs (W8A8, group-wise Hadamard)."""
    allowed = {"format", "convrot", "convrot_groupsize", "per_row"}
    return convrot_group_size(layout) is not None and layout.get("format") == INT8_TENSORWISE and set(layout) <= allowed


def marker_bytes(layout: dict) -> bytes:
    """A `comfy_quant` marker's contents: the layout as UTF-8 JSON (json.dumps' default spacing)."""
    return json.dumps(layout).encode("utf-8")


def quantization_metadata(layers: dict[str, dict]) -> str:
    """The `_quantization_metadata` header entry for `layers` (layer name -> its header layout)."""
    return json.dumps({"format_version": METADATA_VERSION, "layers": layers})
