"""Checkpoint file -> `Flux2Transformer2DModel` with quantized linears, without a float copy.

The model is built once on the meta device, quantized linears are swapped in by the
dtype of each weight in the file, and tensors are read one at a time following the
checkpoint's load plan (`Checkpoint.load_items`), moved to the target device and
assigned. An INT8 weight is never widened to BF16 on the way.
"""

from __future__ import annotations

import warnings
from itertools import groupby
from pathlib import Path
from typing import Literal

import torch
from diffusers import Flux2Transformer2DModel
from safetensors import safe_open

from ..errors import CheckpointError, ConfigError
from ..formats.checkpoint import FLOAT, FP8, INT8, Checkpoint, TensorKind, open_checkpoint
from ..formats.config import ConfigLike, quantization_config, resolve_config
from ..formats.validate import check_structure
from ..int8.rotation import check_rotation_matrix, hadamard
from .dtypes import resolve_dtype
from .hub import resolve_checkpoint
from .skeleton import build_empty_model, check_shapes, swap_quantized_linears

ActivationChoice = Literal["auto", "static", "dynamic"]
ACTIVATION_CHOICES: tuple[ActivationChoice, ...] = ("auto", "static", "dynamic")


def load_transformer(
    path: str | Path,
    config: ConfigLike = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    activations: ActivationChoice = "auto",
    *,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Flux2Transformer2DModel:
    """Load a FLUX.2 transformer checkpoint as diffusers' `Flux2Transformer2DModel`.

    Reads BFL single files (INT8 W8A8, BF16, FP8), ComfyUI INT8 files, ModelOpt and
    diffusers folders. Each linear whose weight is int8 (float8) in the file becomes an
    `Int8Linear` (`Fp8Linear`); nothing is widened to float on the way.

    Parameters
    ----------
    path : str or Path
        A `.safetensors` file, or a diffusers / ModelOpt transformer folder (or a pipeline
        folder holding one in `transformer/`), or a file on the Hugging Face hub written
        `owner/repo/file.safetensors` (fetched through the HF cache; `local_files_only` and
        `token` as in huggingface_hub).
    config : str, Path, dict or None
        A variant name (`klein-4b`, `klein-9b`, `klein-base-4b`, `klein-base-9b`), a config
        dict, or a folder holding a diffusers `config.json`. Default: the folder's, else
        inferred from the tensor shapes. Always checked against every shape.
    device : str or torch.device
        Where the weights go; tensors are read one at a time and moved there.
    dtype, torch_dtype : torch.dtype
        The compute dtype of activations and of the layers kept in float (default
        bfloat16); `torch_dtype` is diffusers' spelling of the same argument. INT8 weights
        stay int8, scales float32.
    activations : {"auto", "static", "dynamic"}
        How INT8 layers quantize their input: with the file's calibrated `input_scale`
        ("static"), with a scale per token computed at run time ("dynamic"), or "auto":
        static where the file has calibrated scales, dynamic where it has none or only
        placeholders of 1.0 (with a warning).

    Returns
    -------
    Flux2Transformer2DModel
        In eval mode, without gradients.

    Raises
    ------
    CheckpointError
        The file is unreadable, incomplete or malformed (the message names the tensor).
    UnsupportedFormatError
        A format the package refuses (pickles, learned rotations, block-wise weights, LoRA
        files). ConvRot INT8 (group-wise Hadamard) is read: see `Int8Linear`'s `rotation_group_size`.
    ConfigError
        No config fits the shapes, or an option is invalid.

    Examples
    --------
    >>> transformer = load_transformer("flux-2-klein-9b-int8.safetensors", device="cuda")  # doctest: +SKIP
    """
    dtype = resolve_dtype(dtype, torch_dtype)
    if activations not in ACTIVATION_CHOICES:
        raise ConfigError(f"activations must be one of {', '.join(ACTIVATION_CHOICES)}, not {activations!r}")
    checkpoint = open_checkpoint(resolve_checkpoint(path, local_files_only, token))
    check_structure(checkpoint)
    model = build_empty_model(resolve_config(config, checkpoint))
    check_shapes(model, checkpoint, source=str(config) if config is not None else "the checkpoint")
    state_dict = read_state_dict(checkpoint, torch.device(device), dtype)
    add_rotations(checkpoint, state_dict, torch.device(device))
    static = static_input_scales(checkpoint, state_dict, activations)
    for name in set(checkpoint.linear_kinds) - static:
        state_dict.pop(f"{name}.input_scale", None)
    swap_quantized_linears(model, checkpoint, static)
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


def static_input_scales(checkpoint: Checkpoint, state_dict: dict[str, torch.Tensor], activations: ActivationChoice) -> set[str]:
    """The quantized layers that will use the file's `input_scale` (the rest quantize dynamically).

    A file whose every INT8 (or every FP8) `input_scale` is exactly 1.0 was not calibrated:
    converters write 1.0 as a placeholder, which would round every activation to an
    integer. "auto" warns and ignores such scales; "static" uses them as told.
    """
    present = {name for name in checkpoint.linear_kinds if f"{name}.input_scale" in state_dict}
    if activations == "dynamic":
        return {name for name in present if checkpoint.linear_kinds[name] == FP8}
    if activations == "static":
        missing = sorted(name for name, kind in checkpoint.linear_kinds.items() if kind == INT8 and name not in present)
        if missing:
            source = checkpoint.tensors[f"{missing[0]}.weight"].key
            raise CheckpointError(checkpoint.path, "int8 weight without input_scale; activations='static' needs the calibrated activation scale (use 'auto' or 'dynamic' to quantize per token at run time)", tensor=source)
        return present
    for kind in (INT8, FP8):
        of_kind = {name for name in present if checkpoint.linear_kinds[name] == kind}
        if of_kind and all(bool((state_dict[f"{name}.input_scale"] == 1.0).all()) for name in of_kind):
            warnings.warn(f"{checkpoint.path}: every {kind} input_scale is 1.0, a placeholder rather than a calibration; ignoring them ({'dynamic per-token activations' if kind == INT8 else 'unquantized activations'}). Pass activations='static' to use them anyway.", UserWarning, stacklevel=3)
            present -= of_kind
    return present


def add_rotations(checkpoint: Checkpoint, state_dict: dict[str, torch.Tensor], device: torch.device) -> None:
    """Give each ConvRot layer its [G, G] Hadamard matrix: built from the group size its marker
    names (ComfyUI's files store none), or the stored one, checked to be exactly ConvRot's."""
    for module, group in checkpoint.rotations.items():
        key = f"{module}.rotation"
        if key in state_dict:
            problem = check_rotation_matrix(state_dict[key])
            if problem:
                raise CheckpointError(checkpoint.path, problem, tensor=checkpoint.tensors[key].key)
        else:
            state_dict[key] = hadamard(group, device).clone()


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
                    elif item.kind is TensorKind.ROTATION:
                        tensor = tensor.float()
                    state_dict[key] = tensor.to(device).contiguous()
    return state_dict
