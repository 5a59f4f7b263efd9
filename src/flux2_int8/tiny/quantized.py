"""The tiny transformer quantized in one forward: the INT8/FP8 files bench and tests run on.

Full calibration (`flux2_int8.quantize`) runs the whole pipeline over many prompts; for
the tiny random model one transformer forward on random inputs gives activation ranges
that are just as meaningful, in a blink.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..formats.write import write_bfl_checkpoint
from ..quantization.export import fp8_state_dict, quantized_state_dict
from ..quantization.observers import InputAmaxObserver, linear_names
from ..quantization.recipe import unify_qkv
from .pipeline import TINY_TRANSFORMER_CONFIG


def random_transformer_inputs(config: dict[str, Any], image_side: int = 4, text_tokens: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random but deterministic inputs for one `Flux2Transformer2DModel` forward.

    hidden_states [1, image_side^2, in_channels], encoder_hidden_states [1, text_tokens,
    joint_attention_dim], timestep [1], img_ids [image_side^2, 4], txt_ids [text_tokens, 4].
    """
    generator = torch.Generator().manual_seed(seed)
    rows, columns = torch.meshgrid(torch.arange(image_side), torch.arange(image_side), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, columns, torch.zeros_like(rows)], -1).reshape(-1, 4)
    txt_ids = torch.zeros(text_tokens, 4, dtype=torch.long)
    txt_ids[:, 3] = torch.arange(text_tokens)
    return {
        "hidden_states": torch.randn(1, image_side**2, config["in_channels"], generator=generator).to(dtype),
        "encoder_hidden_states": torch.randn(1, text_tokens, config["joint_attention_dim"], generator=generator).to(dtype),
        "timestep": torch.tensor([0.7], dtype=dtype),
        "img_ids": img_ids,
        "txt_ids": txt_ids,
    }


def one_forward_amax(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |input| of every linear over one forward, q/k/v unified."""
    with InputAmaxObserver(model, linear_names(model)) as observer, torch.no_grad():
        model(**inputs)
    return unify_qkv(observer.amax)


def write_tiny_quantized(folder: Path, fmt: str, path: Path) -> Path:
    """Quantize the tiny pipeline in `folder` to `fmt` ("int8" or "fp8") as a BFL single file."""
    from diffusers import Flux2Transformer2DModel

    model = Flux2Transformer2DModel.from_pretrained(folder / "transformer", local_files_only=True, use_safetensors=True).float().eval()
    amax = one_forward_amax(model, random_transformer_inputs(dict(TINY_TRANSFORMER_CONFIG)))
    state = quantized_state_dict(model, amax) if fmt == "int8" else fp8_state_dict(model, amax)
    return write_bfl_checkpoint(path, state, {"format": f"bfl-{fmt}", "source": "flux2-int8 bench (tiny)"})
