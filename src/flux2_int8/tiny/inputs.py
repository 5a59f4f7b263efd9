"""Deterministic random inputs for one transformer forward: what one-forward calibration,
compile checks and micro-benchmarks feed the tiny (or any sized) klein transformer."""

from __future__ import annotations

from typing import Any

import torch


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
