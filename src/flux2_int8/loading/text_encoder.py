"""INT8 W8A8 text encoder file -> transformers Qwen3 model, without a float copy.

The sibling of `load_transformer` for files written by `flux2-int8 quantize
--text-encoder`: the model is built with empty (meta) parameters from the config in
the file's header (or one given), every linear whose weight is int8 in the file
becomes an `Int8Linear`, and tensors are read one at a time onto the device and
assigned. Buffers that are computed, not stored (rotary frequencies), are built
normally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from ..errors import CheckpointError, ConfigError
from ..formats.header import SafetensorsHeader, metadata_object, read_header
from ..formats.scales import canonical_scale, check_scale_values, check_stored_scale
from ..int8.linear import Int8Linear
from .dtypes import resolve_dtype

CONFIG_METADATA = "text_encoder_config"
_SCALES = ("weight_scale", "input_scale")


def load_text_encoder(
    path: str | Path,
    config: str | Path | dict[str, Any] | PretrainedConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    torch_dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """Load a W8A8 text encoder file as the `Qwen3ForCausalLM` a klein pipeline takes.

    Parameters
    ----------
    path : str or Path
        A file written by `flux2-int8 quantize --text-encoder`.
    config : str, Path, dict, PretrainedConfig or None
        Default: the config in the file's header; otherwise a pipeline folder (its
        `text_encoder/config.json`), a text encoder folder, a dict or a transformers config.
    device : str or torch.device
        Where the weights go.
    dtype, torch_dtype : torch.dtype
        The dtype of the float layers and activations (default bfloat16); int8 weights
        stay int8 and scales float32.

    Returns
    -------
    PreTrainedModel
        Pass it to `Flux2KleinPipeline.from_pretrained(..., text_encoder=...)`, or to
        `flux2_int8.load_pipeline(..., text_encoder=path)` which does it for you.

    Raises
    ------
    CheckpointError
        A missing, unexpected or misshapen tensor, or a bad scale (named).
    ConfigError
        No usable config.
    """
    dtype = resolve_dtype(dtype, torch_dtype)
    header = read_header(path)
    model = _empty_model(_resolve_config(config, header), dtype)
    quantized = _check_tensors(header, model, set(tied_keys(model)))
    for name in quantized:
        _swap_int8(model, name)
    state = _read_state(header, quantized, torch.device(device), dtype)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()  # assign replaced the embedding; point lm_head at the new one
    model.to(device)  # the computed buffers; assigned tensors are already there
    model.requires_grad_(False)
    return model.eval()


def _resolve_config(config: str | Path | dict[str, Any] | PretrainedConfig | None, header: SafetensorsHeader) -> PretrainedConfig:
    if isinstance(config, PretrainedConfig):
        return config
    if isinstance(config, dict):
        return _config_from_dict(config, "the config given")
    if config is None:
        if CONFIG_METADATA not in header.metadata:
            raise CheckpointError(header.path, f"the header has no '{CONFIG_METADATA}'; pass config= (the base pipeline folder)")
        return _config_from_dict(metadata_object(header, CONFIG_METADATA) or {}, f"{header.path} header")
    folder = Path(config)
    for candidate in (folder / "text_encoder", folder):
        if (candidate / "config.json").is_file():
            return AutoConfig.from_pretrained(candidate)
    raise ConfigError(f"text encoder config '{folder}': expected a pipeline folder with text_encoder/config.json or a folder with config.json")


def _config_from_dict(document: dict[str, Any], source: str) -> PretrainedConfig:
    document = dict(document)
    model_type = document.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"text encoder config from {source} has no model_type")
    return AutoConfig.for_model(model_type, **document)


def _empty_model(config: PretrainedConfig, dtype: torch.dtype) -> PreTrainedModel:
    """Parameters on meta (no memory, no init), buffers real, tied weights (lm_head) tied."""
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()
    return model


def tied_keys(model: nn.Module) -> list[str]:
    """Keys whose parameter is the very object of an earlier key (lm_head tied to the embedding).

    Told by identity, not by storage: on the meta device every tensor has the same
    (null) storage pointer, and a view of a weight is not a tied weight. safetensors
    stores such a tensor once, under the first key.
    """
    seen: set[int] = set()
    tied = []
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.append(key)
        seen.add(id(tensor))
    return tied


def _check_tensors(header: SafetensorsHeader, model: nn.Module, tied: set[str]) -> list[str]:
    """Every parameter present with its shape; int8 weights on linears with both scales. Returns those linears."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    found = header.tensors
    for key in sorted(set(expected) - set(found)):
        raise CheckpointError(header.path, "missing from the file (the config expects it)", tensor=key)
    quantized = [key[: -len(".weight")] for key, info in found.items() if key.endswith(".weight") and info.dtype == "I8"]
    scales = {f"{name}.{scale}" for name in quantized for scale in _SCALES}
    for key in sorted(set(found) - set(expected) - scales):
        raise CheckpointError(header.path, "unexpected tensor for this text encoder config", tensor=key)
    for key, shape in expected.items():
        if found[key].shape != shape:
            raise CheckpointError(header.path, f"shape {list(found[key].shape)}; the config expects {list(shape)}", tensor=key)
    for name in quantized:
        if not isinstance(model.get_submodule(name), nn.Linear):
            raise CheckpointError(header.path, "int8 weight on a layer that is not a linear", tensor=f"{name}.weight")
        _check_scales(header, name)
    return quantized


def _check_scales(header: SafetensorsHeader, name: str) -> None:
    weight = header.tensors[f"{name}.weight"]
    for scale in _SCALES:
        info = header.tensors.get(f"{name}.{scale}")
        if info is None:
            raise CheckpointError(header.path, f"int8 weight without {scale}", tensor=f"{name}.weight")
        check_stored_scale(header.path, f"{name}.{scale}", scale, info.dtype, info.shape, weight.shape)


def _swap_int8(model: nn.Module, name: str) -> None:
    original = model.get_submodule(name)
    layer = Int8Linear(original.in_features, original.out_features, bias=original.bias is not None, device="meta")
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)


def _read_state(header: SafetensorsHeader, quantized: list[str], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Tensors as the model holds them: int8 weights as stored, scales float32 [N] / 0-d, the rest in `dtype`."""
    int8_weights = {f"{name}.weight" for name in quantized}
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(header.path), framework="pt", device=str(device)) as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            module, _, param = key.rpartition(".")
            if param in _SCALES:
                check_scale_values(header.path, key, tensor)
                tensor = canonical_scale(param, tensor, header.tensors[f"{module}.weight"].shape[0])
            elif key not in int8_weights:
                tensor = tensor.to(dtype)
            state[key] = tensor
    return state
