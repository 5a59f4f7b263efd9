"""The empty transformer: built once on the meta device, held against the checkpoint, its
quantized linears swapped in (shared by `load_transformer` and the diffusers quantizer).

Building the skeleton needs diffusers, so it lives here rather than in `formats/`,
which stays header-only.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import Flux2Transformer2DModel
from torch import nn

from ..errors import ConfigError
from ..formats.checkpoint import FP8, INT8, Checkpoint
from ..int8.linear import Fp8Linear, Int8Linear
from ..lora import register_peft_layers


def build_empty_model(config: dict[str, Any]) -> Flux2Transformer2DModel:
    """The transformer skeleton on the meta device: no memory, no initialisation."""
    try:
        with torch.device("meta"):
            return Flux2Transformer2DModel.from_config(config)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid Flux2Transformer2DModel config: {error}") from None


def check_shapes(model: Flux2Transformer2DModel, checkpoint: Checkpoint, source: str) -> None:
    """Raise `ConfigError` unless the checkpoint's tensors are exactly the model's, shape for shape."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: checkpoint.shape(k) for k, s in checkpoint.tensors.items() if k.rsplit(".", 1)[1] in ("weight", "bias")}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or wrong):
        return
    details = []
    if wrong:
        details.append(f"tensor '{checkpoint.tensors[wrong[0]].key}' is {list(found[wrong[0]])}, the config expects {list(expected[wrong[0]])}")
    if missing:
        details.append(f"{len(missing)} tensors missing (e.g. '{missing[0]}')")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected tensors (e.g. '{unexpected[0]}')")
    raise ConfigError(f"{checkpoint.path}: shapes do not fit the config from {source}: " + "; ".join(details))


def swap_quantized_linears(model: nn.Module, checkpoint: Checkpoint, static: set[str]) -> None:
    """Replace each `nn.Linear` whose weight is int8/fp8 in the file with our layer (on meta).

    The layer is built whole: which scales it holds is told by the checkpoint, and whether
    it quantizes activations statically by `static` (names of layers keeping `input_scale`).
    """
    for name, kind in checkpoint.linear_kinds.items():
        if kind not in (INT8, FP8):
            continue
        original = model.get_submodule(name)
        shape = (original.in_features, original.out_features)
        bias = original.bias is not None
        pre_quant_scale = f"{name}.pre_quant_scale" in checkpoint.tensors
        if kind == INT8:
            mode = "static" if name in static else "dynamic"
            rotation = checkpoint.rotations.get(name)
            layer: nn.Module = Int8Linear(*shape, bias=bias, device="meta", activations=mode, pre_quant_scale=pre_quant_scale, rotation_group_size=rotation)
        else:
            layer = Fp8Linear(*shape, bias=bias, device="meta", input_scale=name in static, pre_quant_scale=pre_quant_scale)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    register_peft_layers()  # so diffusers' LoRA API (pipe.load_lora_weights) takes these layers
