"""A float transformer plus calibrated activation ranges -> an INT8 W8A8 state dict and file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..formats.keys import diffusers_to_bfl
from ..formats.write import write_safetensors_atomic
from .recipe import Recipe, input_scale_from_amax, quantize_weight, weight_scale_per_channel


def quantized_state_dict(model: nn.Module, input_amax: dict[str, float], recipe: Recipe = Recipe(), kept_dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Diffusers-named state dict: int8 weights with float32 scales for every linear the
    recipe quantizes, `kept_dtype` for the rest. Every quantized linear needs an amax."""
    state: dict[str, torch.Tensor] = {}
    quantized = {name for name, module in model.named_modules() if isinstance(module, nn.Linear) and not recipe.keeps(name)}
    for name in sorted(quantized - input_amax.keys()):
        raise KeyError(f"no calibrated input range for linear '{name}'")
    for key, tensor in model.state_dict().items():
        module, _, param = key.rpartition(".")
        if module in quantized and param == "weight":
            scale = weight_scale_per_channel(tensor)
            state[key] = quantize_weight(tensor, scale)
            state[f"{module}.weight_scale"] = scale
            state[f"{module}.input_scale"] = input_scale_from_amax(input_amax[module])
        else:
            state[key] = tensor.detach().to(kept_dtype)
    return state


def write_bfl_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write a diffusers-named state dict as one BFL single-file checkpoint (official key names)."""
    header = {"producer": f"flux2-int8 {__version__}", **(metadata or {})}
    return write_safetensors_atomic(path, diffusers_to_bfl(state_dict), header)
