"""SmoothQuant (experimental), folded into the weights so the checkpoint stays plain W8A8.

SmoothQuant divides a linear's input channel j by s_j and multiplies the weight's
column j by s_j: the product is unchanged, but activation outliers move into the
weights, which quantize per channel and tolerate them better. With

    s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)

the smoothed ranges become max|X_j / s_j| = (max|X_j| max|W_j|) ** (1 - alpha) and
max|W_j s_j| = (max|X_j| max|W_j|) ** alpha: equal when alpha = 0.5.

The division x / s must happen somewhere. Storing it as ModelOpt's `pre_quant_scale`
(one more multiply per layer at run time) would make the file something plain W8A8
loaders misread, so we only smooth linears whose input is made by an op that is
linear per channel and can absorb 1/s in its own weights (the attention output and MLP
down projections; not the linears fed by the adaptive LayerNorm).

Those pairs, why they are the only ones, and folding a factor through them are
`channels.folding`'s (nano-outliers folds through the same pairs the other way); this
module chooses the factors.
"""

from __future__ import annotations

import torch
from torch import nn

from ..channels import FoldGroup, fold, foldable_groups


_MIN = 1e-5  # floors max|X_j| and max|W_j| so a dead channel gives a finite s


def smoothing_factors(model: nn.Module, group: FoldGroup, channel_amax: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    """float32 [K]: s for the group, from the inputs' per-channel max and the weights' column max.

    Channels that never saw a non-zero input (or have an all-zero weight column) keep s = 1.
    """
    activation = torch.stack([channel_amax[name].float().cpu() for name in group.consumers]).amax(dim=0)
    weight = torch.stack([model.get_submodule(name).weight.detach().float().abs().amax(dim=0).cpu() for name in group.consumers]).amax(dim=0)
    factors = activation.clamp(min=_MIN) ** alpha / weight.clamp(min=_MIN) ** (1 - alpha)
    return torch.where((activation > 0) & (weight > 0), factors, torch.ones_like(factors))


def apply_smoothquant(model: nn.Module, channel_amax: dict[str, torch.Tensor], alpha: float, quantized: set[str]) -> dict[str, float]:
    """Smooth every group with a quantized consumer; return each consumer's new max |input|.

    The new range is max_j(max|X_j| / s_j), exact from the recorded per-channel maxima,
    so no second calibration run is needed.
    """
    ranges: dict[str, float] = {}
    for group in foldable_groups(model):
        if not quantized.intersection(group.consumers):
            continue
        factors = smoothing_factors(model, group, channel_amax, alpha)
        fold(model, group, factors)
        for name in group.consumers:
            ranges[name] = float((channel_amax[name].float().cpu() / factors).amax())
    return ranges

