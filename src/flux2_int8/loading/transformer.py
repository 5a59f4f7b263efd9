"""Checkpoint file -> `Flux2Transformer2DModel` with quantized linears, without a float copy.

The model is built once on the meta device, quantized linears are swapped in by the
dtype of each weight in the file, and tensors are read one at a time following the
checkpoint's load plan (`Checkpoint.load_items`), moved to the target device and
assigned. An INT8 weight is never widened to BF16 on the way.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import torch
from diffusers import Flux2Transformer2DModel
from safetensors import safe_open
from torch import nn

from ..formats.checkpoint import FLOAT, FP8, INT8, Checkpoint, TensorKind, open_checkpoint
from ..formats.config import ConfigLike, quantization_config, resolve_config
from ..formats.validate import check_structure
from .skeleton import build_empty_model, check_shapes, swap_quantized_linears


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
    check_shapes(model, checkpoint, source=str(config) if config is not None else "the checkpoint")
    swap_quantized_linears(model, checkpoint)
    state_dict = read_state_dict(checkpoint, torch.device(device), dtype)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.requires_grad_(False)
    _record_quantization(model, checkpoint)
    return model.eval()


def _record_quantization(model: Flux2Transformer2DModel, checkpoint: Checkpoint) -> None:
    """Put the `quantization_config` in the model's config, so `save_pretrained` writes a
    folder diffusers' `from_pretrained` loads back through our quantizer."""
    kinds = set(checkpoint.linear_kinds.values())
    if kinds & {INT8, FP8}:
        kept = [name for name, kind in checkpoint.linear_kinds.items() if kind == FLOAT]
        model.register_to_config(quantization_config=quantization_config(kept, "W8A8" if INT8 in kinds else "FP8"))


def read_state_dict(checkpoint: Checkpoint, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read every stored tensor once, in file order, as the model holds it on `device`.

    Quantized weights stay as stored, scales become float32 (the load items check and
    shape them), everything else takes `dtype`.
    """
    state_dict: dict[str, torch.Tensor] = {}
    for file, items in groupby(checkpoint.load_items(), key=lambda item: item.file):
        # safe_open maps the file: tensors are read lazily from the page cache, so loading
        # on the CPU costs ~0.05x the file size until the weights are used (measured in
        # tests/loading/test_compile_and_memory.py), and a GPU load streams tensor by tensor.
        with safe_open(str(file), framework="pt") as handle:
            for item in items:
                for key, tensor in item.convert(handle.get_tensor(item.source_key)).items():
                    if item.kind is TensorKind.FLOAT:
                        tensor = tensor.to(dtype)
                    state_dict[key] = tensor.to(device).contiguous()
    return state_dict
