"""Foldable pairs of a `Flux2Transformer2DModel`: a per-channel factor through them changes nothing.

A linear's input channel j can be divided by s_j, and its weight column j multiplied by
s_j, at no cost to what the model computes, wherever the op that makes channel j is
linear per channel and can absorb 1/s_j in its own weight rows:

- attention output projections (`to_out.0` with `to_add_out`; single blocks' `to_out`,
  attention part): attention output channel j is linear in v_j, so v's rows (`to_v` and
  `add_v_proj`, or the v rows of `to_qkv_mlp_proj`) absorb it. Image and text tokens
  attend to each other's v, so the two output projections share one factor.
- MLP down projections (`ff.linear_out`, `ff_context.linear_out`; single blocks'
  `to_out`, MLP part): SwiGLU computes silu(a) * b, linear in b, so the b rows of the up
  projection absorb it.

Linears fed by the adaptive LayerNorm (q/k/v, MLP up projections, `to_qkv_mlp_proj`)
have no such pair: their input is `(1 + scale) * norm(x) + shift`, and klein's
modulation linears have no bias to absorb the constant part of 1/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Producer:
    """Rows `rows` of linear `name` make the folded input channels `part` (slices)."""

    name: str
    rows: slice
    part: slice


@dataclass(frozen=True)
class FoldGroup:
    """Linears that read the same foldable channels, and the rows that produce them."""

    consumers: tuple[str, ...]
    producers: tuple[Producer, ...]


def foldable_groups(model: nn.Module) -> list[FoldGroup]:
    """Every foldable group of a `Flux2Transformer2DModel` (see the module docstring)."""
    groups: list[FoldGroup] = []
    everything = slice(None)
    for index, block in enumerate(getattr(model, "transformer_blocks", [])):
        prefix = f"transformer_blocks.{index}"
        groups.append(FoldGroup(
            (f"{prefix}.attn.to_out.0", f"{prefix}.attn.to_add_out"),
            (Producer(f"{prefix}.attn.to_v", everything, everything), Producer(f"{prefix}.attn.add_v_proj", everything, everything)),
        ))
        for ff in ("ff", "ff_context"):
            hidden = getattr(block, ff).linear_out.in_features
            groups.append(FoldGroup((f"{prefix}.{ff}.linear_out",), (Producer(f"{prefix}.{ff}.linear_in", slice(hidden, 2 * hidden), everything),)))
    for index, block in enumerate(getattr(model, "single_transformer_blocks", [])):
        prefix = f"single_transformer_blocks.{index}.attn"
        inner, hidden = block.attn.inner_dim, block.attn.mlp_hidden_dim
        fused = f"{prefix}.to_qkv_mlp_proj"
        groups.append(FoldGroup((f"{prefix}.to_out",), (
            Producer(fused, slice(2 * inner, 3 * inner), slice(0, inner)),
            Producer(fused, slice(3 * inner + hidden, 3 * inner + 2 * hidden), slice(inner, inner + hidden)),
        )))
    return groups


def foldable_consumers(model: nn.Module) -> list[str]:
    """The linears whose input channels have a foldable producer, group by group."""
    return [name for group in foldable_groups(model) for name in group.consumers]


def fold(model: nn.Module, group: FoldGroup, factors: torch.Tensor) -> None:
    """Multiply the consumers' weight columns by `factors` (float32 [K]) and divide the producers' rows by them, in float32.

    The changed weights are stored as float32 Parameters (a quantized model is only
    exported afterwards), so folding adds no rounding beyond float32's.
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
