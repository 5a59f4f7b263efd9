"""One GEMM for q, k and v: fuse the projections of every FLUX.2 double-block attention.

`to_q`, `to_k`, `to_v` read the same input, and so do `add_q_proj`, `add_k_proj`,
`add_v_proj`; with one static `input_scale` between them (INT8 checkpoints store the
max over the three), the input is quantized once and the three products become one
wider GEMM ([3N, K] weight), which fills the GPU better and reads the activation once.

The fused layers take diffusers' own names (`to_qkv`, `to_added_qkv`) and the attention
is flagged `fused_projections = True`, the mechanism of diffusers'
`AttentionModuleMixin.fuse_projections`: `Flux2AttnProcessor` then calls the fused layer
and splits its output with `chunk(3)`. Unlike diffusers, the separate layers are deleted
rather than kept, so the weights are not held twice; `unfuse_projections` cannot undo
this. Fuse after loading, for inference: the state dict's names change.

FP8 layers fuse the same way. Besides speed, fusing is what a LoKr made for the fused
q/k/v (ai-toolkit's BFL layout) needs: diffusers fuses before adding it, and on our
layers that call lands here (see `flux2_int8.lora.register`).
"""

from __future__ import annotations

import torch
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.transformers.transformer_flux2 import Flux2AttnProcessor, Flux2KVAttnProcessor
from torch import nn

from ..errors import Flux2Int8Error
from ..formats.keys import QKV_GROUPS
from .linear import Fp8Linear, Int8Linear

# Processors that call `attn.to_qkv` / `attn.to_added_qkv` when `attn.fused_projections` is set.
_FUSION_AWARE_PROCESSORS = (Flux2AttnProcessor, Flux2KVAttnProcessor)


def fuse_qkv_projections(model: nn.Module) -> int:
    """Fuse q/k/v (and the added text-stream q/k/v) of every attention in `model`; returns how many.

    Every attention is checked before any is changed, so a refusal leaves the model as
    it was. INT8 and FP8 layers fuse alike (the weights and their per-channel scales are
    concatenated, so the fused layer computes exactly what the three did). Refused
    (Flux2Int8Error): three quantized layers whose `input_scale` or
    `pre_quant_scale` differ (one quantized input could not serve them), layers of
    different kinds, and attentions whose processor would not use the fused layer.
    Already fused attentions and those without separate q/k/v are skipped.
    """
    plans = [(name, attention, _fused_layers(name, attention)) for name, attention in _fusable_attentions(model)]
    for _, attention, fused_layers in plans:
        for (separate, fused_name), fused in zip(QKV_GROUPS, fused_layers):
            if fused is None:
                continue
            setattr(attention, fused_name, fused)
            for layer_name in separate:
                delattr(attention, layer_name)
        attention.fused_projections = True
    return len(plans)


def _fusable_attentions(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, AttentionModuleMixin) or not module._supports_qkv_fusion:
            continue
        if getattr(module, "fused_projections", False) or not hasattr(module, "to_q"):
            continue
        if not isinstance(module.processor, _FUSION_AWARE_PROCESSORS):
            raise Flux2Int8Error(f"cannot fuse q/k/v of '{name}': its processor {type(module.processor).__name__} does not read fused projections (expected one of {', '.join(p.__name__ for p in _FUSION_AWARE_PROCESSORS)})")
        found.append((name, module))
    return found


def _fused_layers(attention_name: str, attention: nn.Module) -> list[nn.Module | None]:
    """The fused layer of each q/k/v group of one attention (None where the group is absent)."""
    fused: list[nn.Module | None] = []
    for separate, _ in QKV_GROUPS:
        layers = [getattr(attention, layer_name, None) for layer_name in separate]
        if all(layer is None for layer in layers):
            fused.append(None)
            continue
        where = f"{attention_name}.{{{','.join(separate)}}}"
        if any(layer is None for layer in layers):
            raise Flux2Int8Error(f"cannot fuse {where}: only some of the three layers exist")
        fused.append(_fuse_group(where, layers))
    return fused


def _fuse_group(where: str, layers: list[nn.Module]) -> nn.Module:
    kinds = {type(layer) for layer in layers}
    if kinds in ({Int8Linear}, {Fp8Linear}):
        return _fuse_quantized(where, layers)  # type: ignore[arg-type]
    if kinds == {nn.Linear}:
        return _fuse_float(layers)  # type: ignore[arg-type]
    names = ", ".join(sorted(kind.__name__ for kind in kinds))
    raise Flux2Int8Error(f"cannot fuse {where}: expected three Int8Linear, three Fp8Linear or three nn.Linear layers, found {names}")


def _fuse_quantized(where: str, layers: list[Int8Linear] | list[Fp8Linear]) -> Int8Linear | Fp8Linear:
    """Concatenate weights [N_i, K] and per-channel scales along N; the shared scales are checked equal."""
    _check_one_input(where, layers)
    first = layers[0]
    fused = _empty_like(first, sum(layer.out_features for layer in layers))
    fused.weight = nn.Parameter(torch.cat([layer.weight for layer in layers]), requires_grad=False)
    fused.weight_scale = torch.cat([layer.weight_scale for layer in layers])
    if first.input_scale is not None:
        fused.input_scale = first.input_scale.clone()
    if first.pre_quant_scale is not None:
        fused.pre_quant_scale = first.pre_quant_scale.clone()
    if getattr(first, "rotation", None) is not None:
        fused.rotation = first.rotation.clone()
    if first.bias is not None:
        fused.bias = nn.Parameter(torch.cat([layer.bias for layer in layers]), requires_grad=False)
    return fused


def _check_one_input(where: str, layers: list[Int8Linear] | list[Fp8Linear]) -> None:
    """Refuse layers that could not share one quantized input (or one weight layout)."""
    first = layers[0]
    for layer in layers[1:]:
        if layer.has_input_scale != first.has_input_scale:
            raise Flux2Int8Error(f"cannot fuse {where}: some quantize activations with a static input_scale, some without")
        if first.input_scale is not None and not torch.equal(layer.input_scale, first.input_scale):
            raise Flux2Int8Error(f"cannot fuse {where}: their input_scale values differ ({', '.join(f'{float(x.input_scale):.6g}' for x in layers)}); one quantized input needs one input_scale")
        if (layer.pre_quant_scale is None) != (first.pre_quant_scale is None) or (first.pre_quant_scale is not None and not torch.equal(layer.pre_quant_scale, first.pre_quant_scale)):
            raise Flux2Int8Error(f"cannot fuse {where}: their SmoothQuant pre_quant_scale vectors differ")
        if _rotation_of(layer) != _rotation_of(first):
            raise Flux2Int8Error(f"cannot fuse {where}: their ConvRot rotations differ (group sizes {', '.join(str(_rotation_of(x)) for x in layers)}); one rotated input needs one rotation")
        if (layer.bias is None) != (first.bias is None) or layer.in_features != first.in_features:
            raise Flux2Int8Error(f"cannot fuse {where}: their in_features or bias presence differ")


def _rotation_of(layer: Int8Linear | Fp8Linear) -> int | None:
    return layer.rotation_group_size if isinstance(layer, Int8Linear) else None


def _empty_like(layer: Int8Linear | Fp8Linear, out_features: int) -> Int8Linear | Fp8Linear:
    """A layer of `layer`'s kind and options on the meta device, `out_features` wide (its backend kept)."""
    options = {"bias": layer.bias is not None, "device": "meta", "pre_quant_scale": layer.pre_quant_scale is not None}
    if isinstance(layer, Fp8Linear):
        return Fp8Linear(layer.in_features, out_features, input_scale=layer.has_input_scale, **options)
    fused = Int8Linear(layer.in_features, out_features, activations=layer.activations, rotation_group_size=layer.rotation_group_size, **options)
    fused.backend = layer.backend
    return fused


def _fuse_float(layers: list[nn.Linear]) -> nn.Linear:
    """The float case (layers kept in BF16), as diffusers' `fuse_projections` builds it."""
    first = layers[0]
    weight = torch.cat([layer.weight.detach() for layer in layers])
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=first.bias is not None, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=first.weight.requires_grad)
    if first.bias is not None:
        fused.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]), requires_grad=first.bias.requires_grad)
    return fused
