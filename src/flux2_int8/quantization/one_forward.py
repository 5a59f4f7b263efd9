"""The tiny transformer quantized in one forward: the INT8/FP8 files bench and tests run on.

Full calibration (`flux2_int8.quantize`) runs the whole pipeline over many prompts; for
the tiny random model one transformer forward on random inputs gives activation ranges
that are just as meaningful, in a blink.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..formats.write import write_bfl_checkpoint
from ..tiny import random_transformer_inputs
from .export import fp8_state_dict, quantized_state_dict
from .observers import InputAmaxObserver, linear_names
from .recipe import unify_qkv


def one_forward_amax(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |input| of every linear over one forward, q/k/v unified."""
    with InputAmaxObserver(model, linear_names(model)) as observer, torch.no_grad():
        model(**inputs)
    return unify_qkv(observer.amax)


def write_tiny_quantized(folder: Path, fmt: str, path: Path) -> Path:
    """Quantize the small pipeline in `folder` (tiny, nano) to `fmt` ("int8" or "fp8") as a BFL single file."""
    from diffusers import Flux2Transformer2DModel

    model = Flux2Transformer2DModel.from_pretrained(folder / "transformer", local_files_only=True, use_safetensors=True).float().eval()
    amax = one_forward_amax(model, random_transformer_inputs(dict(model.config)))
    state = quantized_state_dict(model, amax) if fmt == "int8" else fp8_state_dict(model, amax)
    return write_bfl_checkpoint(path, state, {"format": f"bfl-{fmt}", "source": "flux2-int8 bench (tiny)"})
