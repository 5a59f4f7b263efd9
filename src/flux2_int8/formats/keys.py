"""BFL single-file key names <-> diffusers `Flux2Transformer2DModel` names.

The map is data (one table of module names); three special cases act on rows:
a fused q/k/v splits into three modules, the final modulation swaps its halves
(BFL: shift, scale; diffusers: scale, shift), and a norm's `scale` is diffusers'
`weight`. We keep our own table instead of diffusers'
`convert_flux2_transformer_checkpoint_to_diffusers` because that converter drops
`input_scale`, cannot chunk 0-d scales and has no inverse, and we need both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors move, so reading headers (`inspect`) stays torch-free
    import torch

BFL_PREFIXES = ("model.diffusion_model.",)


class Transform(Enum):
    RENAME = "rename"
    SPLIT_QKV = "split_qkv"
    SWAP_HALVES = "swap_halves"


# (BFL module pattern, diffusers module templates, transform). `{0}` is the block index.
_MODULE_TABLE: tuple[tuple[str, tuple[str, ...], Transform], ...] = (
    ("img_in", ("x_embedder",), Transform.RENAME),
    ("txt_in", ("context_embedder",), Transform.RENAME),
    ("time_in.in_layer", ("time_guidance_embed.timestep_embedder.linear_1",), Transform.RENAME),
    ("time_in.out_layer", ("time_guidance_embed.timestep_embedder.linear_2",), Transform.RENAME),
    ("guidance_in.in_layer", ("time_guidance_embed.guidance_embedder.linear_1",), Transform.RENAME),
    ("guidance_in.out_layer", ("time_guidance_embed.guidance_embedder.linear_2",), Transform.RENAME),
    ("double_stream_modulation_img.lin", ("double_stream_modulation_img.linear",), Transform.RENAME),
    ("double_stream_modulation_txt.lin", ("double_stream_modulation_txt.linear",), Transform.RENAME),
    ("single_stream_modulation.lin", ("single_stream_modulation.linear",), Transform.RENAME),
    ("final_layer.adaLN_modulation.1", ("norm_out.linear",), Transform.SWAP_HALVES),
    ("final_layer.linear", ("proj_out",), Transform.RENAME),
    ("double_blocks.{0}.img_attn.qkv", ("transformer_blocks.{0}.attn.to_q", "transformer_blocks.{0}.attn.to_k", "transformer_blocks.{0}.attn.to_v"), Transform.SPLIT_QKV),
    ("double_blocks.{0}.txt_attn.qkv", ("transformer_blocks.{0}.attn.add_q_proj", "transformer_blocks.{0}.attn.add_k_proj", "transformer_blocks.{0}.attn.add_v_proj"), Transform.SPLIT_QKV),
    ("double_blocks.{0}.img_attn.proj", ("transformer_blocks.{0}.attn.to_out.0",), Transform.RENAME),
    ("double_blocks.{0}.txt_attn.proj", ("transformer_blocks.{0}.attn.to_add_out",), Transform.RENAME),
    ("double_blocks.{0}.img_mlp.0", ("transformer_blocks.{0}.ff.linear_in",), Transform.RENAME),
    ("double_blocks.{0}.img_mlp.2", ("transformer_blocks.{0}.ff.linear_out",), Transform.RENAME),
    ("double_blocks.{0}.txt_mlp.0", ("transformer_blocks.{0}.ff_context.linear_in",), Transform.RENAME),
    ("double_blocks.{0}.txt_mlp.2", ("transformer_blocks.{0}.ff_context.linear_out",), Transform.RENAME),
    ("double_blocks.{0}.img_attn.norm.query_norm", ("transformer_blocks.{0}.attn.norm_q",), Transform.RENAME),
    ("double_blocks.{0}.img_attn.norm.key_norm", ("transformer_blocks.{0}.attn.norm_k",), Transform.RENAME),
    ("double_blocks.{0}.txt_attn.norm.query_norm", ("transformer_blocks.{0}.attn.norm_added_q",), Transform.RENAME),
    ("double_blocks.{0}.txt_attn.norm.key_norm", ("transformer_blocks.{0}.attn.norm_added_k",), Transform.RENAME),
    ("single_blocks.{0}.linear1", ("single_transformer_blocks.{0}.attn.to_qkv_mlp_proj",), Transform.RENAME),
    ("single_blocks.{0}.linear2", ("single_transformer_blocks.{0}.attn.to_out",), Transform.RENAME),
    ("single_blocks.{0}.norm.query_norm", ("single_transformer_blocks.{0}.attn.norm_q",), Transform.RENAME),
    ("single_blocks.{0}.norm.key_norm", ("single_transformer_blocks.{0}.attn.norm_k",), Transform.RENAME),
)

# diffusers' names for a fused q/k/v (`AttentionModuleMixin.fuse_projections`), by BFL stream.
_FUSED_QKV_NAMES = {"img_attn": "to_qkv", "txt_attn": "to_added_qkv"}
# The q/k/v groups, read off the table: ((to_q, to_k, to_v), to_qkv), ((add_q_proj, ...), to_added_qkv).
# They read one input, so they share one input_scale and fuse into one GEMM.
QKV_GROUPS: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    (tuple(target.rpartition(".")[2] for target in targets), _FUSED_QKV_NAMES[bfl.split(".")[2]])
    for bfl, targets, transform in _MODULE_TABLE
    if transform is Transform.SPLIT_QKV
)

# Parameter names: BFL norms call their weight `scale`; old ComfyUI files spell scales differently.
_PARAM_ALIASES = {"scale": "weight", "scale_weight": "weight_scale", "scale_input": "input_scale"}
# Tensors with one entry per output row: these follow rows through splits and swaps.
_ROW_PARAMS = ("weight", "bias", "weight_scale")


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape("{0}"), r"(\d+)") + "$")


_BFL_PATTERNS = [(_compile(bfl), targets, transform) for bfl, targets, transform in _MODULE_TABLE]


@dataclass(frozen=True)
class ModuleMapping:
    """Where one BFL module goes in diffusers, and how its tensors are reshaped."""

    bfl_module: str
    diffusers_modules: tuple[str, ...]
    transform: Transform


def strip_prefix(key: str) -> str:
    """Drop the `model.diffusion_model.` prefix ComfyUI puts on every key."""
    for prefix in BFL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def split_param(key: str) -> tuple[str, str]:
    """`a.b.weight_scale` -> (`a.b`, `weight_scale`), with BFL/ComfyUI aliases resolved."""
    module, _, param = key.rpartition(".")
    return module, _PARAM_ALIASES.get(param, param)


def map_bfl_module(bfl_module: str) -> ModuleMapping | None:
    """The diffusers module(s) for a BFL module name, or None for a name we don't know."""
    for pattern, targets, transform in _BFL_PATTERNS:
        match = pattern.match(bfl_module)
        if match:
            return ModuleMapping(bfl_module, tuple(t.format(*match.groups()) for t in targets), transform)
    return None


def is_row_tensor(param: str, tensor_numel: int) -> bool:
    """Whether a tensor has one entry per output row (so a split or swap must move it)."""
    return param in _ROW_PARAMS and not (param == "weight_scale" and tensor_numel == 1)


def bfl_tensor_to_diffusers(mapping: ModuleMapping, param: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """Convert one BFL tensor into its diffusers tensor(s), keyed by full diffusers name.

    Row tensors ([N, K] weights, [N] or [N, 1] scales, biases) are chunked or swapped
    along dim 0; per-tensor values (input_scale, a single weight_scale, pre_quant_scale
    [K]) are shared unchanged by every target, which is how q, k and v share one
    input_scale.
    """
    import torch

    rows = is_row_tensor(param, tensor.numel())
    targets = mapping.diffusers_modules
    if mapping.transform is Transform.SPLIT_QKV:
        parts = torch.chunk(tensor, 3, dim=0) if rows else (tensor,) * 3
    elif mapping.transform is Transform.SWAP_HALVES and rows:
        first, second = torch.chunk(tensor, 2, dim=0)
        parts = (torch.cat([second, first], dim=0),)
    else:
        parts = (tensor,)
    return {f"{module}.{param}": part for module, part in zip(targets, parts)}



_DIFFUSERS_PATTERNS = [
    (_compile(target), bfl, transform, position)
    for bfl, targets, transform in _MODULE_TABLE
    for position, target in enumerate(targets)
]


def map_diffusers_module(module: str) -> tuple[str, Transform, int] | None:
    """(BFL module, transform, position among q/k/v) for a diffusers module name."""
    for pattern, bfl, transform, position in _DIFFUSERS_PATTERNS:
        match = pattern.match(module)
        if match:
            return bfl.format(*match.groups()), transform, position
    return None


def diffusers_to_bfl(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a diffusers transformer state dict to BFL single-file names (the inverse map).

    q/k/v row tensors are concatenated; their shared per-tensor values (input_scale)
    become one value, the max of the three, which is the ModelOpt convention. A norm's
    `weight` is written as BFL's `scale`. Raises `KeyError` naming an unknown key.
    """
    grouped: dict[str, dict[str, list[torch.Tensor | None]]] = {}
    transforms: dict[str, Transform] = {}
    for key, tensor in state_dict.items():
        module, param = split_param(key)
        found = map_diffusers_module(module)
        if found is None:
            raise KeyError(f"no BFL name for diffusers tensor '{key}'")
        bfl, transform, position = found
        transforms[bfl] = transform
        slots = grouped.setdefault(bfl, {}).setdefault(param, [None, None, None])
        slots[position] = tensor
    out: dict[str, torch.Tensor] = {}
    for bfl, params in grouped.items():
        for param, slots in params.items():
            out[f"{bfl}.{_bfl_param_name(bfl, param)}"] = _merge(bfl, param, slots, transforms[bfl])
    return out


def _bfl_param_name(bfl_module: str, param: str) -> str:
    return "scale" if bfl_module.endswith("_norm") and param == "weight" else param


def _merge(bfl: str, param: str, slots: list[torch.Tensor | None], transform: Transform) -> torch.Tensor:
    import torch

    if transform is Transform.SPLIT_QKV:
        if any(s is None for s in slots):
            raise KeyError(f"'{bfl}.{param}' needs all of q, k and v")
        parts = [s for s in slots if s is not None]
        if is_row_tensor(param, parts[0].numel()):
            return torch.cat(parts, dim=0)
        if parts[0].numel() == 1:
            return torch.stack([p.reshape(()) for p in parts]).amax().reshape(parts[0].shape)
        if not all(torch.equal(parts[0], p) for p in parts[1:]):
            raise KeyError(f"'{bfl}.{param}' differs between q, k and v; a fused layer needs one")
        return parts[0]
    tensor = slots[0]
    assert tensor is not None
    if transform is Transform.SWAP_HALVES and is_row_tensor(param, tensor.numel()):
        first, second = torch.chunk(tensor, 2, dim=0)
        return torch.cat([second, first], dim=0)
    return tensor
