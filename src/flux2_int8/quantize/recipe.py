"""The W8A8 recipe: which linears are quantized and how their scales are computed.

Scales follow the ModelOpt convention the published checkpoints use: symmetric,
`scale = amax / 127`, weights per output channel, activations per tensor.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch

INT8_MAX = 127.0
# Embedders and the output layer stay BF16 (published recipe): they are small, see raw
# inputs or produce the final velocity, and quantizing them costs quality for no speed.
DEFAULT_KEEP = ("x_embedder", "context_embedder", "time_guidance_embed.*", "norm_out.linear", "proj_out")
MODULATION = ("double_stream_modulation_img.linear", "double_stream_modulation_txt.linear", "single_stream_modulation.linear")


@dataclass(frozen=True)
class Recipe:
    """What to keep in float; everything else that is an `nn.Linear` becomes INT8."""

    keep: tuple[str, ...] = DEFAULT_KEEP
    quantize_modulation: bool = False
    extra_keep: tuple[str, ...] = field(default=())

    def keeps(self, module_name: str) -> bool:
        patterns = self.keep + self.extra_keep + (() if self.quantize_modulation else MODULATION)
        return any(fnmatch.fnmatchcase(module_name, p) for p in patterns)


def weight_scale_per_channel(weight: torch.Tensor) -> torch.Tensor:
    """float [N, K] -> float32 [N]: amax over each output row / 127 (an all-zero row gets 1)."""
    amax = weight.float().abs().amax(dim=1)
    return torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))


def quantize_weight(weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """float [N, K] and float32 [N] -> int8 [N, K], symmetric, round half to even."""
    return torch.clamp(torch.round(weight.float() / weight_scale[:, None]), -INT8_MAX, INT8_MAX).to(torch.int8)


def input_scale_from_amax(amax: float) -> torch.Tensor:
    """The static activation scale (0-d float32) from a calibrated max |input|."""
    if not amax > 0:
        raise ValueError(f"calibrated amax must be > 0, got {amax}")
    return torch.tensor(amax / INT8_MAX, dtype=torch.float32)
