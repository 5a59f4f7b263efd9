"""Applying LoRA files to a pipeline with the checks a command line wants first.

`load_loras` is what `generate --lora` and `eval --lora` call: every file is read,
converted by diffusers (any layout it knows) and checked against the transformer
before any adapter is added, so a LoRA made for another model or klein size is
refused with the file and the first layer that does not fit, and nothing was
changed. Loading itself is diffusers' `pipe.load_lora_weights`, the call users make.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, Flux2Int8Error
from ..formats.foreign import recognise
from ..formats.header import read_header
from .register import register_peft_layers

_TRANSFORMER_PREFIX = "transformer."
# diffusers' key suffixes -> (which factor, position of the dimension that must fit)
_LORA_FACTORS = {".lora_A.weight": "A", ".lora_B.weight": "B"}
_LOKR_FACTORS = (".lokr_w1", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2", ".lokr_w2_a", ".lokr_w2_b")


@dataclass(frozen=True)
class LoraSpec:
    """One `--lora PATH_OR_REPO[:SCALE]`: where the LoRA is and how strongly to apply it."""

    source: str
    scale: float = 1.0


def parse_lora_spec(text: str) -> LoraSpec:
    """`PATH_OR_REPO[:SCALE]` -> LoraSpec; a tail after the last ':' that is a number is the scale."""
    source, _, tail = text.rpartition(":")
    if source and _is_number(tail):
        return LoraSpec(source, float(tail))
    if not text:
        raise Flux2Int8Error("--lora needs a LoRA file or hub repository, optionally followed by :SCALE")
    return LoraSpec(text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def adapter_name(path: Path, taken: set[str]) -> str:
    """A PEFT adapter name from the file name (no dots: PEFT splits module paths on them), unique."""
    stem = re.sub(r"[^0-9A-Za-z_-]", "_", path.stem) or "lora"
    name, counter = stem, 1
    while name in taken:
        counter += 1
        name = f"{stem}_{counter}"
    return name


def read_lora(path: Path, pipeline_class: Any) -> dict[str, torch.Tensor]:
    """The LoRA's transformer tensors, converted by diffusers to its own `transformer.<module>.lora_A.weight` naming."""
    found = recognise([read_header(path)])
    if found is None or found.lora is None:
        raise CheckpointError(path, "not a LoRA: no lora_A/lora_B, lora_down/lora_up or lokr_* tensors (a transformer checkpoint goes to --transformer)")
    try:
        state = pipeline_class.lora_state_dict(str(path), use_safetensors=True)
    except (ValueError, KeyError, IndexError, RuntimeError, AssertionError) as error:
        raise CheckpointError(path, f"diffusers could not convert this {found.lora.format} LoRA for FLUX.2 ({error})") from None
    return {key: value for key, value in state.items() if key.startswith(_TRANSFORMER_PREFIX)}


def check_lora_fits(path: str | Path, state: dict[str, torch.Tensor], transformer: nn.Module) -> None:
    """Refuse a LoRA that does not fit `transformer`, naming the file and the first layer (in model order).

    Parameters
    ----------
    path : str or Path
        The LoRA file, for the message.
    state : dict of str to Tensor
        Its tensors in diffusers' naming (`transformer.<module>.lora_A.weight`, as
        `read_lora` returns them). LoRA factors must be A [r, in_features] and
        B [out_features, r]; LoKr factors w1 (x) w2 must make [out_features, in_features].
    transformer : nn.Module
        The model the LoRA is meant for; it is not changed.

    Raises
    ------
    CheckpointError
        A targeted layer is missing, has other shapes, or is quantized under a LoKr.
    """
    if not state:
        raise CheckpointError(path, "this LoRA has no tensors for the transformer")
    if any(".lokr_" in key for key in state) and _has_quantized_layers(transformer):
        raise CheckpointError(path, "a LoKr adapter cannot be applied to INT8/FP8 layers yet (PEFT's LoKr wraps only nn.Linear); use it with a BF16 transformer")
    layers = _factors_by_layer(state)
    order = {name: index for index, (name, _) in enumerate(transformer.named_modules())}
    for module_name in sorted(layers, key=lambda name: order.get(name, len(order))):  # first in the model's order
        factors = layers[module_name]
        layer = _linear(transformer, module_name)
        if layer is None:
            raise CheckpointError(path, f"does not fit this transformer: it targets layer '{module_name}', which this transformer does not have (a LoRA for another model? or q/k/v were fused: load LoRAs first)")
        expected = (layer.out_features, layer.in_features)
        found = _lora_shape(factors)
        if found != expected:
            raise CheckpointError(
                path,
                f"does not fit this transformer: layer '{module_name}' is {expected[1]} -> {expected[0]} features, the LoRA's is {found[1]} -> {found[0]} (a LoRA for another model or klein size?)",
            )


def _has_quantized_layers(transformer: nn.Module) -> bool:
    from ..int8.linear import Fp8Linear, Int8Linear

    return any(isinstance(module, (Int8Linear, Fp8Linear)) for module in transformer.modules())


def _factors_by_layer(state: dict[str, torch.Tensor]) -> dict[str, dict[str, tuple[int, ...]]]:
    layers: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, tensor in state.items():
        key = key[len(_TRANSFORMER_PREFIX):]
        for suffix in (*_LORA_FACTORS, *_LOKR_FACTORS):
            if key.endswith(suffix):
                layers.setdefault(key[: -len(suffix)], {})[suffix] = tuple(tensor.shape)
                break
    return layers


def _lora_shape(factors: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """(out_features, in_features) of the update the factors make (-1 where a factor is missing)."""
    if ".lora_A.weight" in factors or ".lora_B.weight" in factors:
        a = factors.get(".lora_A.weight", (-1, -1))
        b = factors.get(".lora_B.weight", (-1, -1))
        return (b[0], a[-1])
    w1 = factors.get(".lokr_w1") or (factors.get(".lokr_w1_a", (-1,))[0], factors.get(".lokr_w1_b", (-1, -1))[-1])
    w2 = factors.get(".lokr_w2") or (factors.get(".lokr_w2_a", (-1,))[0], factors.get(".lokr_w2_b", (-1, -1))[-1])
    return (w1[0] * w2[0], w1[1] * w2[1])


def _linear(transformer: nn.Module, name: str) -> nn.Module | None:
    """The linear layer (its base layer when already wrapped by PEFT) named `name`, or None."""
    try:
        module = transformer.get_submodule(name)
    except AttributeError:
        return None
    module = getattr(module, "base_layer", module)
    return module if hasattr(module, "in_features") and hasattr(module, "out_features") else None


def load_loras(pipeline: Any, paths: Sequence[str | Path], scales: Sequence[float] | None = None, fuse: bool = False) -> list[str]:
    """Check every LoRA against `pipeline.transformer`, then load them with `pipeline.load_lora_weights`.

    All files are checked before the first one is loaded, so a refusal leaves the
    pipeline as it was. Adapters are named after their files and activated together;
    their factors are cast to the transformer's dtype, so the branch runs in the
    compute dtype without a cast per call.

    Parameters
    ----------
    pipeline : Flux2KleinPipeline
        A loaded pipeline (INT8, FP8 or BF16 transformer).
    paths : sequence of str or Path
        Local LoRA `.safetensors` files, in any layout diffusers converts.
    scales : sequence of float, optional
        The adapter weight of each (default 1.0 each), as `set_adapters` takes them.
    fuse : bool
        Merge the LoRAs into the weights (INT8 layers re-quantized per channel) and drop
        the adapter layers: plain INT8 speed and memory, and no way back (no unfuse).

    Returns
    -------
    list of str
        The adapter names given to diffusers.

    Raises
    ------
    CheckpointError
        A file that is not a LoRA, that diffusers cannot convert, or that does not fit
        this transformer (naming the file and the first layer that does not fit).
    """
    register_peft_layers()
    paths = [Path(path) for path in paths]
    scales = list(scales) if scales is not None else [1.0] * len(paths)
    transformer = pipeline.transformer
    for path in paths:
        check_lora_fits(path, read_lora(path, type(pipeline)), transformer)
    names: list[str] = []
    taken = set(getattr(transformer, "peft_config", {}) or {})
    for path in paths:
        name = adapter_name(path, taken | set(names))
        pipeline.load_lora_weights(str(path), adapter_name=name, use_safetensors=True)
        names.append(name)
    pipeline.set_adapters(names, adapter_weights=scales)
    _cast_adapters(transformer, names, transformer.dtype)
    if fuse:
        pipeline.fuse_lora(adapter_names=names)
        pipeline.unload_lora_weights()
    return names


def _cast_adapters(transformer: nn.Module, names: list[str], dtype: torch.dtype) -> None:
    from peft.tuners.lora import LoraLayer

    for module in transformer.modules():
        if isinstance(module, LoraLayer):
            for name in names:
                for factors in (module.lora_A, module.lora_B):
                    if name in factors:
                        factors[name].to(dtype)
