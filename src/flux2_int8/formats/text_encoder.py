"""The package's own INT8 text encoder file (`flux2-int8 quantize --text-encoder`), recognised from its header.

Its header carries the Qwen3 config under `TEXT_ENCODER_CONFIG` (what `load_text_encoder`
builds the model from), so `inspect` can describe it without torch, as it does a transformer.
"""

from __future__ import annotations

from typing import Any

from .header import SafetensorsHeader, metadata_object

TEXT_ENCODER_CONFIG = "text_encoder_config"  # header metadata key: the transformers config, as JSON
_INT8 = "I8"


def is_text_encoder_file(headers: list[SafetensorsHeader]) -> bool:
    """One file whose header carries a text encoder config: ours, written by `quantize --text-encoder`."""
    return len(headers) == 1 and TEXT_ENCODER_CONFIG in headers[0].metadata


def describe_text_encoder(header: SafetensorsHeader) -> dict[str, Any]:
    """What `inspect` says of a text encoder file: its architecture and how many linears are INT8."""
    config = metadata_object(header, TEXT_ENCODER_CONFIG) or {}
    weights = {key[: -len(".weight")]: info for key, info in header.tensors.items() if key.endswith(".weight") and len(info.shape) == 2}
    int8 = sum(info.dtype == _INT8 for info in weights.values())
    architecture = ", ".join(config.get("architectures") or [config.get("model_type", "unknown")])
    return {
        "path": str(header.path),
        "format": "flux2-int8-text-encoder",
        "layout": "transformers",
        "loadable": True,
        "kind": "text encoder",
        "variant": f"{architecture}: {config.get('num_hidden_layers')} layers, hidden size {config.get('hidden_size')}",
        "linears": {"int8": int8, "fp8": 0, "float": len(weights) - int8, "total": len(weights)},
        "scale_shapes": {},
        "tensors": len(header.tensors),
        "size_bytes": header.file_size,
        "metadata": {key: value for key, value in header.metadata.items() if key != TEXT_ENCODER_CONFIG},
        "note": "an INT8 W8A8 text encoder: load it with `generate --text-encoder FILE` or `flux2_int8.load_text_encoder(FILE)`",
    }
