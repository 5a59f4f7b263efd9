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
linear per channel and can absorb 1/s in its own weights:

- attention output projections (`to_out.0` with `to_add_out`; single blocks' `to_out`,
  attention part): attention output channel j is linear in v_j, so v's rows (`to_v`
  and `add_v_proj`, or the v rows of `to_qkv_mlp_proj`) are divided by s_j. Image and
  text tokens attend to each other's v, so the two output projections share one s.
- MLP down projections (`ff.linear_out`, `ff_context.linear_out`; single blocks'
  `to_out`, MLP part): SwiGLU computes silu(a) * b, linear in b, so the b rows of
  the up projection are divided by s_j.

Linears fed by the adaptive LayerNorm (q/k/v, MLP up projections, `to_qkv_mlp_proj`)
are not smoothed: their input is `(1 + scale) * norm(x) + shift`, and klein's
modulation linears have no bias to absorb the constant part of 1/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


_MIN = 1e-5  # floors max|X_j| and max|W_j| so a dead channel gives a finite s


@dataclass(frozen=True)
class Producer:
    """Rows `rows` of linear `name` make the smoothed input channels `part` (slices)."""

    name: str
    rows: slice
    part: slice


@dataclass(frozen=True)
class SmoothGroup:
    """Linears that read the same smoothed channels, and the rows that produce them."""

    consumers: tuple[str, ...]
    producers: tuple[Producer, ...]


def smoothing_groups(model: nn.Module) -> list[SmoothGroup]:
    """Every foldable group of a `Flux2Transformer2DModel` (see the module docstring)."""
    groups: list[SmoothGroup] = []
    everything = slice(None)
    for index, block in enumerate(getattr(model, "transformer_blocks", [])):
        prefix = f"transformer_blocks.{index}"
        groups.append(SmoothGroup(
            (f"{prefix}.attn.to_out.0", f"{prefix}.attn.to_add_out"),
            (Producer(f"{prefix}.attn.to_v", everything, everything), Producer(f"{prefix}.attn.add_v_proj", everything, everything)),
        ))
        for ff in ("ff", "ff_context"):
            hidden = getattr(block, ff).linear_out.in_features
            groups.append(SmoothGroup((f"{prefix}.{ff}.linear_out",), (Producer(f"{prefix}.{ff}.linear_in", slice(hidden, 2 * hidden), everything),)))
    for index, block in enumerate(getattr(model, "single_transformer_blocks", [])):
        prefix = f"single_transformer_blocks.{index}.attn"
        inner, hidden = block.attn.inner_dim, block.attn.mlp_hidden_dim
        fused = f"{prefix}.to_qkv_mlp_proj"
        groups.append(SmoothGroup((f"{prefix}.to_out",), (
            Producer(fused, slice(2 * inner, 3 * inner), slice(0, inner)),
            Producer(fused, slice(3 * inner + hidden, 3 * inner + 2 * hidden), slice(inner, inner + hidden)),
        )))
    return groups


def smoothing_factors(model: nn.Module, group: SmoothGroup, channel_amax: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    """float32 [K]: s for the group, from the inputs' per-channel max and the weights' column max.

    Channels that never saw a non-zero input (or have an all-zero weight column) keep s = 1.
    """
    activation = torch.stack([channel_amax[name].float().cpu() for name in group.consumers]).amax(dim=0)
    weight = torch.stack([model.get_submodule(name).weight.detach().float().abs().amax(dim=0).cpu() for name in group.consumers]).amax(dim=0)
    factors = activation.clamp(min=_MIN) ** alpha / weight.clamp(min=_MIN) ** (1 - alpha)
    return torch.where((activation > 0) & (weight > 0), factors, torch.ones_like(factors))


def fold(model: nn.Module, group: SmoothGroup, factors: torch.Tensor) -> None:
    """Multiply the consumers' weight columns by s and divide the producers' rows by s, in float32.

    The changed weights are stored as float32 Parameters (the model is only exported
    afterwards), so folding adds no rounding beyond float32's.
    """
    for name in group.consumers:
        layer = model.get_submodule(name)
        layer.weight = nn.Parameter(layer.weight.detach().float() * factors.to(layer.weight.device)[None, :], requires_grad=False)
    for producer in group.producers:
        layer = model.get_submodule(producer.name)
        weight = layer.weight.detach().float().clone()
        divisor = factors[producer.part].to(weight.device)
        weight[producer.rows] /= divisor[:, None]
        layer.weight = nn.Parameter(weight, requires_grad=False)
        if layer.bias is not None:
            bias = layer.bias.detach().float().clone()
            bias[producer.rows] /= divisor
            layer.bias = nn.Parameter(bias, requires_grad=False)


def apply_smoothquant(model: nn.Module, channel_amax: dict[str, torch.Tensor], alpha: float, quantized: set[str]) -> dict[str, float]:
    """Smooth every group with a quantized consumer; return each consumer's new max |input|.

    The new range is max_j(max|X_j| / s_j), exact from the recorded per-channel maxima,
    so no second calibration run is needed.
    """
    ranges: dict[str, float] = {}
    for group in smoothing_groups(model):
        if not quantized.intersection(group.consumers):
            continue
        factors = smoothing_factors(model, group, channel_amax, alpha)
        fold(model, group, factors)
        for name in group.consumers:
            ranges[name] = float((channel_amax[name].float().cpu() / factors).amax())
    return ranges


def smoothed_consumers(model: nn.Module) -> list[str]:
    """The linears whose per-channel input maxima SmoothQuant needs."""
    return [name for group in smoothing_groups(model) for name in group.consumers]
