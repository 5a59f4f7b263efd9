"""Writers of small checkpoints in every layout users hold, for tests alone.

A float transformer is quantized with the package's recipe, its scales reshaped into
each stored form the loader accepts, then written as a BFL single file (optionally
with ComfyUI's key prefix), a ModelOpt diffusers folder or a BFL FP8 file. Real-size
layouts are written as sparse header-only files: correct headers, no data, no memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..bench.header_only import meta_int8_state, write_sparse_header  # noqa: F401 (kept here for the tests)
from ..formats.keys import diffusers_to_bfl, map_diffusers_module
from ..formats.write import write_safetensors_atomic
from ..quantization.export import quantized_linears, quantized_state_dict
from ..int8.kernels import INT8_MAX
from ..int8.weights import quantize_weight
from ..quantization.recipe import Recipe

WeightScaleShape = Literal["[N]", "[N,1]", "0-d", "[1]"]
InputScaleShape = Literal["0-d", "[1]"]


def int8_state(model: nn.Module, input_amax: dict[str, float], weight_scale: WeightScaleShape = "[N,1]", input_scale: InputScaleShape = "0-d", recipe: Recipe = Recipe()) -> dict[str, torch.Tensor]:
    """A diffusers-named INT8 W8A8 state dict with scales stored in the requested shapes."""
    state = quantized_state_dict(model, input_amax, recipe)
    if weight_scale in ("0-d", "[1]"):
        _per_tensor_weights(state)
    stored = {"[N]": (-1,), "[N,1]": (-1, 1), "0-d": (), "[1]": (1,)}
    for key in list(state):
        if key.endswith(".weight_scale"):
            state[key] = state[key].reshape(stored[weight_scale])
        elif key.endswith(".input_scale"):
            state[key] = state[key].reshape(stored[input_scale])
    return state


def _per_tensor_weights(state: dict[str, torch.Tensor]) -> None:
    """Re-quantize every int8 weight with one scale for the whole tensor."""
    for key in [k for k in state if k.endswith(".weight_scale")]:
        module = key[: -len(".weight_scale")]
        dequantized = state[f"{module}.weight"].float() * state[key][:, None]
        scale = (dequantized.abs().amax() / INT8_MAX).reshape(())
        state[f"{module}.weight"] = quantize_weight(dequantized, scale.expand(dequantized.shape[0]))
        state[key] = scale


def write_bfl(path: str | Path, state: dict[str, torch.Tensor], prefix: str = "", metadata: dict[str, str] | None = None) -> Path:
    """Write a diffusers-named state dict as a BFL single file, keys optionally prefixed."""
    tensors = {prefix + key: value for key, value in diffusers_to_bfl(state).items()}
    return write_safetensors_atomic(path, tensors, metadata or {"format": "test"})


def write_modelopt(folder: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """A ModelOpt-style diffusers folder with the `quantization_config` ModelOpt writes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(folder / "diffusion_pytorch_model.safetensors", state, {"format": "pt"})
    kept = sorted({k.rsplit(".", 1)[0] for k, v in state.items() if k.endswith(".weight") and v.dtype != torch.int8})
    document = {k: v for k, v in config.items() if not k.startswith("_")}
    document["_class_name"] = "Flux2Transformer2DModel"
    document["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "W8A8_SQ_PER_CHANNEL", "ignore": kept}
    (folder / "config.json").write_text(json.dumps(document, indent=2, default=list))
    return folder


def write_comfy_int8(path: str | Path, model: nn.Module, per_row: bool = True, prefix: str = "", recipe: Recipe = Recipe()) -> Path:
    """An INT8 file as ComfyUI's converter `convert_to_quant --int8 --comfy_quant` writes it.

    The float model is converted to BFL key names first (optionally under
    `model.diffusion_model.`), then each quantized BFL weight (a fused q/k/v as one tensor)
    becomes I8 with an F32 `weight_scale` [N, 1] (`--scaling_mode row`) or 0-d (`tensor`),
    beside a `.comfy_quant` uint8 marker holding JSON; the header carries
    `_quantization_metadata`. No `input_scale`: ComfyUI quantizes activations per token.
    """
    quantized_bfl = {map_diffusers_module(name)[0] for name in quantized_linears(model, recipe)}  # type: ignore[index]
    bfl = diffusers_to_bfl({key: value.detach().float() for key, value in model.state_dict().items()})
    layers: dict[str, dict[str, Any]] = {}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in bfl.items():
        module, _, param = key.rpartition(".")
        if module in quantized_bfl and param == "weight":
            amax = value.abs().amax(dim=1, keepdim=True) if per_row else value.abs().amax()
            scale = (amax / INT8_MAX).float()
            tensors[prefix + key] = torch.clamp(torch.round(value / scale), -INT8_MAX, INT8_MAX).to(torch.int8)
            tensors[f"{prefix}{module}.weight_scale"] = scale
            marker = {"format": "int8_tensorwise", "per_row": True} if per_row else {"format": "int8_tensorwise"}
            tensors[f"{prefix}{module}.comfy_quant"] = torch.tensor(list(json.dumps(marker).encode()), dtype=torch.uint8)
            layers[module] = {"format": "int8_tensorwise"}
        else:
            tensors[prefix + key] = value.to(torch.bfloat16)
    metadata = {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})}
    return write_safetensors_atomic(path, tensors, metadata)
