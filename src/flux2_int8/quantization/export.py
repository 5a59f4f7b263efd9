"""A float model plus calibrated activation ranges -> an INT8 W8A8 state dict, file or folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..version import __version__
from ..errors import Flux2Int8Error
from ..formats.checkpoint import DIFFUSERS_WEIGHTS
from ..formats.comfy import COMFY_MARKER, INT8_PER_ROW_MARKER, INT8_TENSORWISE, QUANTIZATION_METADATA, convrot_marker, marker_bytes, quantization_metadata
from ..formats.config import quantization_config
from ..formats.keys import diffusers_to_bfl
from ..formats.write import write_safetensors_atomic
from .output import is_previous_export
from ..int8.kernels import FP8_MAX
from ..int8.rotation import hadamard, rotate_weight
from ..int8.weights import quantize_weight, quantize_weight_fp8, weight_scale_per_channel
from .recipe import Recipe, input_scale_from_amax, unify_qkv


def quantized_linears(model: nn.Module, recipe: Recipe) -> list[str]:
    """Names of the linears `recipe` makes INT8, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and not recipe.keeps(name)]


def quantized_state_dict(model: nn.Module, input_amax: dict[str, float] | None, recipe: Recipe = Recipe(), kept_dtype: torch.dtype = torch.bfloat16, rotations: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Diffusers-named state dict: int8 weights with float32 scales for every linear the
    recipe quantizes, `kept_dtype` for the rest. Every quantized linear needs an amax, or
    `input_amax` is None: dynamic activations, and no `input_scale` is written.

    `rotations` (linear -> ConvRot group size G) rotates those weights along K before they
    are quantized and adds each layer's `rotation` [G, G], as `Int8Linear` holds it; their
    amax must be of the rotated input (`InputAmaxObserver(rotations=...)`)."""
    rotations = rotations or {}
    state: dict[str, torch.Tensor] = {}
    quantized = set(quantized_linears(model, recipe))
    missing = sorted(quantized - input_amax.keys()) if input_amax is not None else []
    for name in missing:
        raise KeyError(f"no calibrated input range for linear '{name}'")
    for key, tensor in model.state_dict().items():
        module, _, param = key.rpartition(".")
        if module in quantized and param == "weight":
            if module in rotations:
                tensor = rotate_weight(tensor, rotations[module])
                state[f"{module}.rotation"] = hadamard(rotations[module]).clone()
            scale = weight_scale_per_channel(tensor)
            state[key] = quantize_weight(tensor, scale)
            state[f"{module}.weight_scale"] = scale
            if input_amax is not None:
                state[f"{module}.input_scale"] = input_scale_from_amax(input_amax[module])
        else:
            state[key] = tensor.detach().to(kept_dtype)
    return state


def fp8_state_dict(model: nn.Module, input_amax: dict[str, float], recipe: Recipe = Recipe()) -> dict[str, torch.Tensor]:
    """A diffusers-named BFL-style FP8 state dict: float8_e4m3fn weights, 0-d float32 scales.

    The FP8 sibling of `quantized_state_dict`, so FP8 files can be made for comparisons.
    """
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        module, _, param = key.rpartition(".")
        if module in input_amax and param == "weight" and not recipe.keeps(module):
            state[key], state[f"{module}.weight_scale"] = quantize_weight_fp8(tensor)
            state[f"{module}.input_scale"] = torch.tensor(input_amax[module] / FP8_MAX)
        else:
            state[key] = tensor.detach().to(torch.bfloat16)
    return state


def write_comfy_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A BFL single file that ComfyUI core and ComfyUI-INT8-Fast load as INT8 (see `formats.comfy`).

    Every int8 layer gets convert_to_quant's row-wise markers: a `comfy_quant` uint8 JSON
    tensor, a float32 `weight_scale` [N, 1], its entry in `_quantization_metadata`; our
    calibrated `input_scale` stays beside them, so flux2-int8 still runs it static. A
    ConvRot layer's marker says `convrot` and its group size (in the header entry too)
    in place of the stored [G, G] matrix, as convert_to_quant `--convrot` writes it.
    """
    tensors = diffusers_to_bfl(state_dict)
    layers: dict[str, dict] = {}
    for key in [k for k, v in tensors.items() if k.endswith(".weight") and v.dtype == torch.int8]:
        module = key[: -len(".weight")]
        tensors[f"{module}.weight_scale"] = tensors[f"{module}.weight_scale"].float().reshape(-1, 1)
        rotation = tensors.pop(f"{module}.rotation", None)  # ComfyUI knows ConvRot by its marker, not by a matrix
        marker = INT8_PER_ROW_MARKER if rotation is None else convrot_marker(rotation.shape[0])
        tensors[f"{module}.{COMFY_MARKER}"] = torch.tensor(list(marker_bytes(marker)), dtype=torch.uint8)
        layers[module] = {"format": INT8_TENSORWISE} if rotation is None else marker
    header = {"producer": f"flux2-int8 {__version__}", **(metadata or {}), QUANTIZATION_METADATA: quantization_metadata(layers)}
    return write_safetensors_atomic(path, tensors, header)


def write_diffusers_folder(folder: str | Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any], metadata: dict[str, str]) -> Path:
    """Write a diffusers transformer folder (config.json + weights), all or nothing.

    The folder is built under a temporary name beside the target and renamed into
    place. q/k/v ranges are unified first (diffusers keeps them as three layers that
    a fused kernel must treat as one). `config.json` carries a `quantization_config`
    naming this package, so diffusers' own loader refuses the folder instead of
    reading int8 weights as floats; `flux2_int8.load_transformer` reads it.
    """
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise Flux2Int8Error(f"cannot write {folder}: folder {folder.parent} does not exist")
    kept = sorted({k.rsplit(".", 1)[0] for k, v in state_dict.items() if k.endswith(".weight") and v.dtype != torch.int8 and v.dim() == 2})
    document = {k: v for k, v in config.items() if not k.startswith("_")}
    document["_class_name"] = "Flux2Transformer2DModel"
    document["quantization_config"] = quantization_config(kept)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        write_safetensors_atomic(staging / DIFFUSERS_WEIGHTS, _unified_state(state_dict), metadata)
        (staging / "config.json").write_text(json.dumps(document, indent=2, default=list) + "\n")
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _unified_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ranges = {k.rsplit(".", 1)[0]: float(v) for k, v in state_dict.items() if k.endswith(".input_scale")}
    unified = unify_qkv(ranges)
    return {k: (torch.tensor(unified[k.rsplit(".", 1)[0]], dtype=torch.float32) if k.endswith(".input_scale") else v) for k, v in state_dict.items()}


def _swap_into_place(staging: Path, folder: Path) -> None:
    """A new or previous export is swapped whole; a folder of the user's (`--overwrite`) gets only our two files."""
    if not folder.exists():
        os.replace(staging, folder)
        return
    if not is_previous_export(folder):
        for path in staging.iterdir():
            os.replace(path, folder / path.name)
        staging.rmdir()
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.replace(folder, previous / folder.name)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)
