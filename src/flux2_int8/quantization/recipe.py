"""The W8A8 recipe: which linears are quantized and how their scales are computed.

Scales follow the ModelOpt convention the published checkpoints use: symmetric,
`scale = amax / 127`, weights per output channel, activations per tensor.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import Flux2Int8Error
from ..formats.keys import QKV_GROUPS, map_diffusers_module

if TYPE_CHECKING:  # torch only where scales are made: `quantize` checks a recipe before importing it
    import torch
    from torch import nn

# Embedders and the output layer stay BF16 (published recipe): they are small, see raw
# inputs or produce the final velocity, and quantizing them costs quality for no speed.
DEFAULT_KEEP = ("x_embedder", "context_embedder", "time_guidance_embed.*", "norm_out.linear", "proj_out")
MODULATION = ("double_stream_modulation_img.linear", "double_stream_modulation_txt.linear", "single_stream_modulation.linear")


@dataclass(frozen=True)
class Recipe:
    """What to keep in float; everything else that is an `nn.Linear` becomes INT8.

    Patterns are `fnmatch` patterns over diffusers module names; for transformer linears
    the BFL name matches too (`single_blocks.3.linear2` as well as
    `single_transformer_blocks.3.attn.to_out`). Keeping one of q, k, v keeps all three.
    """

    keep: tuple[str, ...] = DEFAULT_KEEP
    quantize_modulation: bool = False
    extra_keep: tuple[str, ...] = field(default=())

    @property
    def patterns(self) -> tuple[str, ...]:
        return self.keep + self.extra_keep + (() if self.quantize_modulation else MODULATION)

    def keeps(self, module_name: str) -> bool:
        return any(matches(pattern, sibling) for sibling in qkv_siblings(module_name) for pattern in self.patterns)


def matches(pattern: str, module_name: str) -> bool:
    """Whether `pattern` matches a module by its diffusers name or, for transformer linears, its BFL name."""
    if fnmatch.fnmatchcase(module_name, pattern):
        return True
    bfl = map_diffusers_module(module_name)
    return bfl is not None and fnmatch.fnmatchcase(bfl[0], pattern)


def qkv_siblings(module_name: str) -> tuple[str, ...]:
    """`a.to_k` -> (`a.to_q`, `a.to_k`, `a.to_v`); any other name -> (name,)."""
    stem, _, leaf = module_name.rpartition(".")
    # q, k and v become one fused GEMM (BFL `qkv`), so they share one input_scale and one precision.
    for group, _ in QKV_GROUPS:
        if leaf in group:
            return tuple(f"{stem}.{part}" if stem else part for part in group)
    return (module_name,)


def unify_qkv(input_amax: dict[str, float]) -> dict[str, float]:
    """Give q, k and v one shared range (the max), as one fused GEMM needs."""
    unified = dict(input_amax)
    for name in input_amax:
        siblings = qkv_siblings(name)
        if len(siblings) > 1 and all(s in input_amax for s in siblings):
            unified[name] = max(input_amax[s] for s in siblings)
    return unified


@dataclass(frozen=True)
class CalibrationMethod:
    """How a linear's activation range is read off its observed inputs: the max, or a percentile of |x|."""

    percentile: float | None = None

    @property
    def spec(self) -> str:
        return "max" if self.percentile is None else f"percentile:{self.percentile:g}"


def parse_calibration(spec: str) -> CalibrationMethod:
    """`max` or `percentile:P` (0 < P <= 100) -> `CalibrationMethod`; anything else is a user error."""
    text = spec.strip().lower()
    if text == "max":
        return CalibrationMethod()
    kind, _, value = text.partition(":")
    try:
        percent = float(value)
    except ValueError:
        percent = math.nan
    if kind != "percentile" or not 0 < percent <= 100:
        raise Flux2Int8Error(f"--calibration '{spec}': expected 'max' or 'percentile:P' with 0 < P <= 100 (e.g. percentile:99.99)")
    return CalibrationMethod(percent)


DEFAULT_CONVROT_GROUP_SIZE = 256


def parse_rotation(spec: str) -> int | None:
    """`off` -> None; `convrot` -> 256; `convrot:G` -> G (a power of 2, at least 2); anything else is a user error."""
    text = spec.strip().lower()
    if text in ("off", "none"):
        return None
    kind, _, value = text.partition(":")
    group = DEFAULT_CONVROT_GROUP_SIZE if kind == "convrot" and not value else int(value) if value.isdigit() else 0
    if kind != "convrot" or group < 2 or group & (group - 1):
        raise Flux2Int8Error(f"--rotation '{spec}': expected off, convrot (group size {DEFAULT_CONVROT_GROUP_SIZE}) or convrot:G with G a power of 2 (e.g. convrot:64)")
    return group


def rotated_linears(model: nn.Module, names: list[str], group_size: int | None) -> dict[str, int]:
    """The linears ConvRot rotates, with G: those whose input width G divides (the others stay plain, as convert_to_quant leaves them)."""
    if group_size is None:
        return {}
    return {name: group_size for name in names if model.get_submodule(name).in_features % group_size == 0}


def input_scale_from_amax(amax: float) -> torch.Tensor:
    """The static activation scale (0-d float32) from a calibrated max |input|."""
    import torch

    from ..int8.kernels import INT8_MAX

    if not amax > 0:
        raise ValueError(f"calibrated amax must be > 0, got {amax}")
    return torch.tensor(amax / INT8_MAX, dtype=torch.float32)
