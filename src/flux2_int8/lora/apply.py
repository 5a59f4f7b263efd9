"""Applying LoRA files to a pipeline with the checks a command line wants first.

`load_loras` is what `generate --lora` and `eval --lora` call: every file is read,
converted by diffusers (any layout it knows) and checked against the transformer
before any adapter is added, so a LoRA made for another model or klein size is
refused with the file and the first layer that does not fit, and nothing was
changed. Loading itself is diffusers' `pipe.load_lora_weights`, the call users make.
"LoRA" here covers LoKr files too: diffusers loads both through the same call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, Flux2Int8Error
from ..limits import LORA_SCALE, RangeError
from ..formats.foreign import recognise
from ..formats.header import read_header
from ..formats.keys import QKV_GROUPS
from .checks import check_factor_magnitudes, check_factor_shapes, check_file_values, check_lokr_factorization
from .register import register_peft_layers
from .spec import LoraSpec, parse_lora_spec  # noqa: F401  (re-exported: the names callers know)

_TRANSFORMER_PREFIX = "transformer."
# diffusers' key suffixes -> (which factor, position of the dimension that must fit)
_LORA_FACTORS = {".lora_A.weight": "A", ".lora_B.weight": "B"}
_LOKR_FACTORS = (".lokr_w1", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2", ".lokr_w2_a", ".lokr_w2_b")
# A fused q/k/v name (`to_qkv`) -> its separate layers (`to_q`, `to_k`, `to_v`).
_FUSED_PARTS = {fused: separate for separate, fused in QKV_GROUPS}


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
    header = read_header(path)
    found = recognise([header])
    if found is None or found.lora is None:
        raise CheckpointError(path, "not a LoRA: no lora_A/lora_B, lora_down/lora_up or lokr_* tensors (a transformer checkpoint goes to --transformer)")
    check_file_values(path, header)
    try:
        state = pipeline_class.lora_state_dict(str(path), use_safetensors=True)
    except (ValueError, KeyError, IndexError, RuntimeError, AssertionError, TypeError) as error:
        raise CheckpointError(path, f"diffusers could not convert this {found.lora.format} LoRA for FLUX.2 ({error})") from None
    state = {key: value for key, value in state.items() if key.startswith(_TRANSFORMER_PREFIX)}
    check_factor_shapes(path, state)
    check_factor_magnitudes(path, state)
    return state


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
        A LoKr on a fused q/k/v (`attn.to_qkv`, as BFL-layout LoKrs target it) fits
        separate `to_q`/`to_k`/`to_v` too: loading it fuses them.
    transformer : nn.Module
        The model the LoRA is meant for; it is not changed.

    Raises
    ------
    CheckpointError
        A targeted layer is missing or has other shapes.
    """
    if not state:
        raise CheckpointError(path, "this LoRA has no tensors for the transformer")
    layers = _factors_by_layer(state)
    for module_name in _in_model_order(layers, transformer):  # the first misfit named is the model's first
        expected = _layer_shape(transformer, module_name)
        if expected is None:
            raise CheckpointError(path, f"does not fit this transformer: it targets layer '{module_name}', which this transformer does not have (a LoRA for another model? or q/k/v were fused: load LoRAs first)")
        found = _lora_shape(layers[module_name])
        if found != expected:
            raise CheckpointError(
                path,
                f"does not fit this transformer: layer '{module_name}' is {expected[1]} -> {expected[0]} features, the LoRA's is {found[1]} -> {found[0]} (a LoRA for another model or klein size?)",
            )


def _in_model_order(names: Iterable[str], transformer: nn.Module) -> list[str]:
    """Layer names sorted as the model holds them (a fused q/k/v name where its to_q is; unknown names last)."""
    order = {name: index for index, (name, _) in enumerate(transformer.named_modules())}
    return sorted(names, key=lambda name: order.get(name, order.get(_parts(name)[0], len(order))))


def _parts(name: str) -> list[str]:
    """The layers `name` stands for: the separate q/k/v of a fused q/k/v name, else `name` itself."""
    parent, _, child = name.rpartition(".")
    return [f"{parent}.{part}" for part in _FUSED_PARTS[child]] if child in _FUSED_PARTS else [name]


def _layer_shape(transformer: nn.Module, name: str) -> tuple[int, int] | None:
    """(out_features, in_features) of layer `name`, or of the q/k/v fusion it names; None if absent."""
    layer = _linear(transformer, name)
    if layer is not None:
        return (layer.out_features, layer.in_features)
    if _parts(name) == [name]:
        return None
    parts = [_linear(transformer, part) for part in _parts(name)]
    if any(part is None for part in parts) or len({part.in_features for part in parts}) != 1:  # type: ignore[union-attr]
        return None
    return (sum(part.out_features for part in parts), parts[0].in_features)  # type: ignore[union-attr]


def _check_compatible(files: Sequence[tuple[Path, dict[str, torch.Tensor]]], transformer: nn.Module) -> None:
    """Refuse, before anything loads, two files whose adapters could not both be added.

    A file targeting the fused q/k/v (a BFL-layout LoKr) and one targeting the separate
    q/k/v: loading the first fuses them, so the second's layers are gone. A LoRA and a
    LoKr on one INT8/FP8 layer: they cannot share it (see `lora.layers.refuse_stacking`).
    """
    owners: dict[str, tuple[str, Path, bool]] = {}  # layer -> (kind, first file targeting it, through a fused name)
    for path, state in files:
        kind = "LoKr" if any(".lokr_" in key for key in state) else "LoRA"
        for name in _in_model_order(_factors_by_layer(state), transformer):
            fused = _parts(name) != [name]
            for part in _parts(name):
                other_kind, other_path, other_fused = owners.setdefault(part, (kind, path, fused))
                if fused != other_fused:
                    raise CheckpointError(path, f"it and {other_path.name} cannot be loaded together: one targets the fused q/k/v holding '{part}', the other '{part}' itself (loading the first fuses q/k/v, so the separate layers are gone)")
                if kind != other_kind and _is_quantized(_linear(transformer, part)):
                    raise CheckpointError(path, f"its {kind} and the {other_kind} of {other_path.name} both target layer '{part}': a LoRA and a LoKr cannot share an INT8/FP8 layer; load one of them")


def _is_quantized(layer: nn.Module | None) -> bool:
    from ..int8.linear import Fp8Linear, Int8Linear

    return isinstance(layer, (Int8Linear, Fp8Linear))


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
        this transformer (naming the file and the first layer that does not fit); two
        files that cannot be loaded together (a LoRA and a LoKr on one INT8/FP8 layer,
        or one targeting the fused q/k/v and one the separate layers).
    Flux2Int8Error
        A LoKr targets the fused q/k/v, but they cannot be fused exactly (their
        `input_scale` values differ).
    """
    register_peft_layers()
    paths = [Path(path) for path in paths]
    scales = list(scales) if scales is not None else [1.0] * len(paths)
    if len(scales) != len(paths):
        raise Flux2Int8Error(f"{len(paths)} LoRA file(s) but {len(scales)} scale(s): give one scale per file")
    scales = [_checked_scale(scale, path) for scale, path in zip(scales, paths)]
    transformer = pipeline.transformer
    files = [(path, read_lora(path, type(pipeline))) for path in paths]
    for path, state in files:
        check_lora_fits(path, state, transformer)
        check_lokr_factorization(path, state)
    _check_compatible(files, transformer)
    _fuse_qkv_if_targeted(transformer, [state for _, state in files])
    del files  # their tensors: diffusers reads each file again
    names: list[str] = []
    taken = set(getattr(transformer, "peft_config", {}) or {})
    for path in paths:
        name = adapter_name(path, taken | set(names))
        try:  # the checks above should leave diffusers nothing to refuse; if it does, one line naming the file
            pipeline.load_lora_weights(str(path), adapter_name=name, use_safetensors=True)
        except (ValueError, KeyError, IndexError, RuntimeError, TypeError) as error:
            raise CheckpointError(path, f"diffusers could not load this LoRA ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
        names.append(name)
    pipeline.set_adapters(names, adapter_weights=scales)
    _cast_adapters(transformer, names, transformer.dtype)
    if fuse:
        try:
            pipeline.fuse_lora(adapter_names=names)
        except ValueError as error:  # our layers refuse a merge that is not finite
            raise Flux2Int8Error(f"--fuse-lora {', '.join(str(p) for p in paths)}: merging gives non-finite weights ({error}); run without --fuse-lora or lower the scale") from None
        pipeline.unload_lora_weights()
    return names


def _checked_scale(scale: float, path: Path) -> float:
    try:
        return LORA_SCALE.check(scale, "scale")
    except RangeError:
        raise Flux2Int8Error(f"LoRA {path}: scale {scale!r} is not {LORA_SCALE.describe()}") from None


def _fuse_qkv_if_targeted(transformer: nn.Module, states: list[dict[str, torch.Tensor]]) -> None:
    """Fuse INT8/FP8 q/k/v now if a LoKr targets the fused layer: diffusers would, but refuses to on
    a model loaded through its quantizer (`is_quantized`); ours is exact (and refused before any change)."""
    from ..int8.fusion import fuse_qkv_projections

    targets = {name for state in states for name in _factors_by_layer(state)}
    if any(_linear(transformer, name) is None and _is_quantized(_linear(transformer, _parts(name)[0])) for name in targets if _parts(name) != [name]):
        fuse_qkv_projections(transformer)


def _cast_adapters(transformer: nn.Module, names: list[str], dtype: torch.dtype) -> None:
    """Cast the named adapters' factors (LoRA A/B, LoKr w1/w2 and their halves) to `dtype`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in transformer.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for attribute in module.adapter_layer_names:
            factors = getattr(module, attribute)
            for name in names:
                if name not in factors:
                    continue
                if isinstance(factors, nn.ParameterDict):  # LoKr: parameters, replaced (a cast makes a new tensor)
                    factors[name] = nn.Parameter(factors[name].detach().to(dtype), requires_grad=factors[name].requires_grad)
                else:  # LoRA: modules, cast in place
                    factors[name].to(dtype)
