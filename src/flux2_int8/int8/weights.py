"""Quantizing weights: the symmetric rules every writer of int8 / float8 weights shares.

The recipe (`quantization`), LoRA fusing (`lora`), the random bench weights and the test
writers all quantize through these, so a weight re-quantized after a LoRA merge lands
on exactly the grid the quantizer would have written.
"""

from __future__ import annotations

import torch

from .kernels import FP8_MAX, INT8_MAX, row_scale


def weight_scale_per_channel(weight: torch.Tensor) -> torch.Tensor:
    """float [N, K] -> float32 [N]: amax over each output row / 127 (an all-zero row gets 1)."""
    return row_scale(weight.float()).reshape(-1)


def quantize_weight(weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """float [N, K] and float32 [N] -> int8 [N, K], symmetric [-127, 127], round half to even."""
    return torch.clamp(torch.round(weight.float() / weight_scale[:, None]), -INT8_MAX, INT8_MAX).to(torch.int8)


def quantize_weight_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [N, K] -> (float8_e4m3fn [N, K], 0-d float32 scale): BFL's per-tensor FP8 layout.

    FP8 files are written only to compare with INT8 (tests, benchmarks); the scale is
    amax / 448, the largest finite float8_e4m3fn.
    """
    scale = weight.float().abs().amax() / FP8_MAX
    return (weight.float() / scale).to(torch.float8_e4m3fn), scale.reshape(())
