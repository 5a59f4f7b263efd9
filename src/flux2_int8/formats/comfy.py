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


def marker_bytes(layout: dict) -> bytes:
    """A `comfy_quant` marker's contents: the layout as UTF-8 JSON (json.dumps' default spacing)."""
    return json.dumps(layout).encode("utf-8")


def quantization_metadata(layers: dict[str, dict]) -> str:
    """The `_quantization_metadata` header entry for `layers` (layer name -> its header layout)."""
    return json.dumps({"format_version": METADATA_VERSION, "layers": layers})
