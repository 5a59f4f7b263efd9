"""Text encoder files -> the headless Qwen3 a klein pipeline reads, without a float copy.

Two sources: a W8A8 file written by `flux2-int8 quantize --text-encoder` (or the
load-time cache, `text_encoder_int8`), and the base's own BF16 `text_encoder/` folder.
Either way the model is built with empty (meta) parameters, cut to the layers the
pipeline reads (`text_encoder_cut`), every linear whose weight is int8 in the file
becomes an `Int8Linear`, and only the tensors the cut model holds are read, one at a
time, onto the device. Tensors past the cut (last layers, final norm, LM head) are never
read. Buffers that are computed, not stored (rotary frequencies), are built normally.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from ..errors import CheckpointError, ConfigError
from ..formats.header import SafetensorsHeader, metadata_object, read_header, read_json_file
from ..formats.text_encoder import TEXT_ENCODER_CONFIG
from ..formats.scales import canonical_scale, check_scale_values, check_stored_scale
from ..int8.linear import Int8Linear
from .dtypes import resolve_dtype
from .text_encoder_cut import TextEncoderCut, cut_for, empty_cut_encoder

CONFIG_METADATA = TEXT_ENCODER_CONFIG  # the header key holding the config (one place: formats.text_encoder)
_SCALES = ("weight_scale", "input_scale")
_WEIGHTS_FILE = "model.safetensors"
_WEIGHTS_INDEX = "model.safetensors.index.json"


def load_text_encoder(
    path: str | Path,
    config: str | Path | dict[str, Any] | PretrainedConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    torch_dtype: torch.dtype | None = None,
    layers: tuple[int, ...] | None = None,
) -> PreTrainedModel:
    """Load a W8A8 text encoder file as the headless Qwen3 (`Qwen3Model`) a klein pipeline takes.

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
    layers : tuple of int, optional
        The hidden states the pipeline will read (default: `Flux2KleinPipeline`'s own,
        (9, 18, 27)); the model keeps the layers up to the deepest, without final norm and
        LM head, whose tensors are never read.

    Returns
    -------
    PreTrainedModel
        A transformers `Qwen3Model` cut to `layers`. Pass it to `Flux2KleinPipeline.from_pretrained(..., text_encoder=...)`, or to
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
    return load_cut_encoder([header], _resolve_config(config, header), device, dtype, layers)


def load_float_text_encoder(
    folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, layers: tuple[int, ...] | None = None
) -> PreTrainedModel:
    """The base's BF16 text encoder (`text_encoder/` of a pipeline folder, or that folder) cut to `layers`.

    Only the cut model's tensors are read from the (sharded) safetensors files; the
    result equals `Qwen3ForCausalLM.from_pretrained` on every layer the pipeline reads.
    """
    component = text_encoder_folder(folder)
    headers = [read_header(file) for file in weight_files(component)]
    return load_cut_encoder(headers, AutoConfig.from_pretrained(component), device, dtype, layers)


def text_encoder_folder(folder: str | Path) -> Path:
    """`folder/text_encoder` when it holds a config, else `folder` itself."""
    folder = Path(folder)
    for candidate in (folder / "text_encoder", folder):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(f"text encoder folder '{folder}': expected a pipeline folder with text_encoder/config.json or a folder with config.json")


def weight_files(component: Path) -> list[Path]:
    """The safetensors files of a transformers folder: the one file, or the shards its index names."""
    index = component / _WEIGHTS_INDEX
    if index.is_file():
        document = read_json_file(index)
        weight_map = document.get("weight_map") if isinstance(document, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(index, "has no 'weight_map' object")
        return [component / name for name in sorted(set(weight_map.values()))]
    if (component / _WEIGHTS_FILE).is_file():
        return [component / _WEIGHTS_FILE]
    raise CheckpointError(component, f"no {_WEIGHTS_FILE} nor {_WEIGHTS_INDEX} (the text encoder's weights)")


def load_cut_encoder(headers: list[SafetensorsHeader], config: PretrainedConfig, device: str | torch.device, dtype: torch.dtype, layers: tuple[int, ...] | None) -> PreTrainedModel:
    """Build the cut encoder on meta, check the stored tensors against it, read what it holds."""
    cut = cut_for(config, layers)
    model = empty_cut_encoder(config, cut, dtype)
    stored = stored_tensors(headers, cut)
    quantized = _check_tensors(stored, model)
    for name in quantized:
        _swap_int8(model, name, static=f"{name}.input_scale" in stored)
    model.load_state_dict(_read_state(stored, quantized, torch.device(device), dtype), strict=True, assign=True)
    model.to(device)  # the computed buffers; assigned tensors are already there
    model.requires_grad_(False)
    return model.eval()


def stored_tensors(headers: list[SafetensorsHeader], cut: TextEncoderCut) -> dict[str, tuple[SafetensorsHeader, str]]:
    """The cut model's name -> (header, stored name) of every stored tensor it holds (the rest is never read)."""
    found: dict[str, tuple[SafetensorsHeader, str]] = {}
    for header in headers:
        for key in header.tensors:
            name = cut.model_key(key)
            if name is not None:
                found[name] = (header, key)
    return found


def _resolve_config(config: str | Path | dict[str, Any] | PretrainedConfig | None, header: SafetensorsHeader) -> PretrainedConfig:
    if isinstance(config, PretrainedConfig):
        return config
    if isinstance(config, dict):
        return _config_from_dict(config, "the config given")
    if config is None:
        if CONFIG_METADATA not in header.metadata:
            raise CheckpointError(header.path, f"the header has no '{CONFIG_METADATA}'; pass config= (the base pipeline folder)")
        return _config_from_dict(metadata_object(header, CONFIG_METADATA) or {}, f"{header.path} header")
    return AutoConfig.from_pretrained(text_encoder_folder(config))


def _config_from_dict(document: dict[str, Any], source: str) -> PretrainedConfig:
    document = dict(document)
    model_type = document.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"text encoder config from {source} has no model_type")
    return AutoConfig.for_model(model_type, **document)


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


def _check_tensors(stored: dict[str, tuple[SafetensorsHeader, str]], model: nn.Module) -> list[str]:
    """Every parameter present with its shape; int8 weights on linears with their scales. Returns those linears."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    path = next(iter(stored.values()))[0].path if stored else Path("(no file)")
    for key in sorted(set(expected) - set(stored)):
        raise CheckpointError(path, "missing from the file (the config expects it)", tensor=key)
    info = {name: header.tensors[key] for name, (header, key) in stored.items()}
    quantized = [key[: -len(".weight")] for key, tensor in info.items() if key.endswith(".weight") and tensor.dtype == "I8"]
    scales = {f"{name}.{scale}" for name in quantized for scale in _SCALES}
    for key in sorted(set(stored) - set(expected) - scales):
        raise CheckpointError(stored[key][0].path, "unexpected tensor for this text encoder config", tensor=stored[key][1])
    for key, shape in expected.items():
        if info[key].shape != shape:
            raise CheckpointError(stored[key][0].path, f"shape {list(info[key].shape)}; the config expects {list(shape)}", tensor=stored[key][1])
    for name in quantized:
        header, key = stored[f"{name}.weight"]
        if not isinstance(model.get_submodule(name), nn.Linear):
            raise CheckpointError(header.path, "int8 weight on a layer that is not a linear", tensor=key)
        _check_scales(stored, name)
    return quantized


def _check_scales(stored: dict[str, tuple[SafetensorsHeader, str]], name: str) -> None:
    """A weight_scale always; an input_scale where the file is calibrated (static), absent for dynamic activations."""
    header, weight_key = stored[f"{name}.weight"]
    weight = header.tensors[weight_key]
    for scale in _SCALES:
        if f"{name}.{scale}" not in stored:
            if scale == "weight_scale":
                raise CheckpointError(header.path, "int8 weight without weight_scale", tensor=weight_key)
            continue
        scale_header, key = stored[f"{name}.{scale}"]
        info = scale_header.tensors[key]
        check_stored_scale(scale_header.path, key, scale, info.dtype, info.shape, weight.shape)


def _swap_int8(model: nn.Module, name: str, static: bool) -> None:
    original = model.get_submodule(name)
    layer = Int8Linear(original.in_features, original.out_features, bias=original.bias is not None, device="meta", activations="static" if static else "dynamic")
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, layer)


def _read_state(stored: dict[str, tuple[SafetensorsHeader, str]], quantized: list[str], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Tensors as the model holds them: int8 weights as stored, scales float32 [N] / 0-d, the rest in `dtype`."""
    int8_weights = {f"{name}.weight" for name in quantized}
    state: dict[str, torch.Tensor] = {}
    for path, name, key, tensor in read_stored(stored):
        module, _, param = name.rpartition(".")
        if param in _SCALES and module in quantized:
            check_scale_values(path, key, tensor)
            tensor = canonical_scale(param, tensor, stored[f"{module}.weight"][0].tensors[stored[f"{module}.weight"][1]].shape[0])
        elif name not in int8_weights:
            tensor = tensor.to(dtype)
        state[name] = tensor.to(device)
    return state


def read_stored(stored: dict[str, tuple[SafetensorsHeader, str]]) -> Iterator[tuple[Path, str, str, torch.Tensor]]:
    """(file, model name, stored key, tensor) for each kept tensor, read once, one `safe_open` per file."""
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for name, (header, key) in stored.items():
        by_file.setdefault(header.path, []).append((name, key))
    for path, entries in by_file.items():
        with safe_open(str(path), framework="pt") as handle:
            for name, key in entries:
                yield path, name, key, handle.get_tensor(key)
