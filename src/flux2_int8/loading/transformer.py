"""Checkpoint file -> `Flux2Transformer2DModel` with quantized linears, without a float copy.

The model is built on the meta device, quantized linears are swapped in by the dtype
of each weight in the file, and tensors are read one at a time, converted, moved to
the target device and assigned. An INT8 weight is never widened to BF16 on the way.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from diffusers import Flux2Transformer2DModel
from safetensors import safe_open
from torch import nn

from ..formats.checkpoint import FP8, INT8, Checkpoint, SourceTensor, open_checkpoint
from ..formats.keys import bfl_tensor_to_diffusers, split_param
from ..formats.validate import SCALE_PARAMS, check_scale_values, check_structure
from ..int8.linear import Fp8Linear, Int8Linear
from ..lora import register_peft_layers
from .config import ConfigLike, build_empty_model, resolve_config

_QUANTIZED_CLASSES = {INT8: Int8Linear, FP8: Fp8Linear}


def load_transformer(
    path: str | Path,
    config: ConfigLike = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> Flux2Transformer2DModel:
    """Load a FLUX.2 transformer checkpoint (BFL INT8/BF16/FP8 file, ModelOpt or diffusers folder).

    `config` is a variant name (`klein-4b`, ...), a config dict, or a folder holding a
    diffusers `config.json`; by default it is read from the folder or inferred from the
    shapes. `dtype` is the compute dtype of activations and of the layers kept in float;
    INT8 weights stay int8 and scales stay float32.
    """
    checkpoint = open_checkpoint(path)
    check_structure(checkpoint)
    model = build_empty_model(resolve_config(config, checkpoint))
    swap_quantized_linears(model, checkpoint)
    register_peft_layers()  # so diffusers' LoRA API (pipe.load_lora_weights) takes the quantized layers
    state_dict = read_state_dict(checkpoint, model, torch.device(device), dtype)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def swap_quantized_linears(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Replace each `nn.Linear` whose weight is int8/fp8 in the file with our layer (on meta)."""
    for name, kind in checkpoint.linear_kinds.items():
        if kind not in _QUANTIZED_CLASSES:
            continue
        original = model.get_submodule(name)
        layer = _QUANTIZED_CLASSES[kind](original.in_features, original.out_features, bias=original.bias is not None, device="meta")
        if f"{name}.pre_quant_scale" in checkpoint.tensors:
            layer.enable_pre_quant_scale()
        if f"{name}.input_scale" not in checkpoint.tensors:
            layer.input_scale = None
            layer.has_input_scale = False
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)


def read_state_dict(checkpoint: Checkpoint, model: nn.Module, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read every tensor once, in file order, converted to what `model` expects on `device`."""
    quantized_weights = {f"{name}.weight" for name, kind in checkpoint.linear_kinds.items() if kind in _QUANTIZED_CLASSES}
    state_dict: dict[str, torch.Tensor] = {}
    for file, sources in _sources_by_file(checkpoint).items():
        # safe_open maps the file: tensors are read lazily from the page cache, so loading
        # on the CPU costs ~0.05x the file size until the weights are used (measured in
        # tests/loading/test_compile_and_memory.py), and a GPU load streams tensor by tensor.
        with safe_open(str(file), framework="pt") as handle:
            for source_key, (source, keys) in sources.items():
                raw = handle.get_tensor(source_key)
                parts = bfl_tensor_to_diffusers(source.mapping, source.param, raw) if source.mapping else {keys[0]: raw}
                for key, tensor in parts.items():
                    state_dict[key] = _finalize(checkpoint, source, key, tensor, key in quantized_weights, device, dtype)
    return state_dict


def _sources_by_file(checkpoint: Checkpoint) -> dict[Path, dict[str, tuple[SourceTensor, list[str]]]]:
    """Group tensors by file and source key, so a fused q/k/v is read once for its three parts."""
    grouped: dict[Path, dict[str, tuple[SourceTensor, list[str]]]] = defaultdict(dict)
    for key, source in checkpoint.tensors.items():
        grouped[source.file].setdefault(source.key, (source, []))[1].append(key)
    return grouped


def _finalize(checkpoint: Checkpoint, source: SourceTensor, key: str, tensor: torch.Tensor, quantized_weight: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Scales -> float32 in the layer's canonical shape; quantized weights untouched; the rest -> dtype."""
    module, param = split_param(key)
    if param in SCALE_PARAMS:
        check_scale_values(checkpoint, source, tensor)
        tensor = _canonical_scale(param, tensor.float(), checkpoint.shape(f"{module}.weight")[0])
    elif not quantized_weight:
        tensor = tensor.to(dtype)
    return tensor.to(device).contiguous()


def _canonical_scale(param: str, scale: torch.Tensor, rows: int) -> torch.Tensor:
    """weight_scale -> [N] (one value is broadcast), input_scale -> 0-d, pre_quant_scale -> [K]."""
    if param == "weight_scale":
        return scale.reshape(-1).expand(rows).clone() if scale.numel() == 1 else scale.reshape(rows)
    if param == "input_scale":
        return scale.reshape(())
    return scale.reshape(-1)
