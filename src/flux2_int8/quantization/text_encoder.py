"""The Qwen3 text encoder as W8A8: which linears, the state dict, the file beside the transformer.

Attention and MLP projections of every decoder layer become INT8 (their inputs are
observed in the same calibration run as the transformer's); embeddings, norms and
`lm_head` stay float (`lm_head` is never called by the pipeline, which reads hidden
states). The file keeps transformers' key names and carries the model config in
its header, so `flux2_int8.load_text_encoder` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..formats.write import write_safetensors_atomic
from ..loading.text_encoder import CONFIG_METADATA, tied_keys
from .export import quantized_state_dict
from .recipe import Recipe

TEXT_ENCODER_KEEP = ("lm_head",)
TEXT_ENCODER_FORMAT = "flux2-int8/w8a8-text-encoder"


def text_encoder_recipe(extra_keep: tuple[str, ...] = ()) -> Recipe:
    """Quantize every linear but `lm_head` (modulation patterns do not apply to Qwen3)."""
    return Recipe(keep=TEXT_ENCODER_KEEP, quantize_modulation=True, extra_keep=extra_keep)


def text_encoder_state_dict(model: nn.Module, input_range: dict[str, float], recipe: Recipe) -> dict[str, torch.Tensor]:
    """transformers-named W8A8 state dict; a tensor tied to another (lm_head to the embedding) is written once.

    The cut, headless encoder `load_pipeline` gives (`Qwen3Model`) is written under
    `Qwen3ForCausalLM`'s names (`model.layers...`), so every file has one naming.
    """
    state = quantized_state_dict(model, input_range, recipe)
    for key in tied_keys(model):
        state.pop(key, None)
    if not hasattr(model, "lm_head"):
        state = {f"model.{key}": tensor for key, tensor in state.items()}
    return state


def write_text_encoder(path: str | Path, state: dict[str, torch.Tensor], config_json: str, metadata: dict[str, str]) -> Path:
    """Write the text encoder file atomically, its config in the header."""
    header = {**metadata, "format": TEXT_ENCODER_FORMAT, CONFIG_METADATA: config_json}
    return write_safetensors_atomic(path, state, header)
