"""Choosing the transformer config: given (folder, dict, variant name) or inferred from shapes.

Inference reads shapes only, so a config can be found for any checkpoint whose
header is readable, without diffusers (`inspect` stays header-only). Whatever the
source, the loader then checks the config against every tensor shape
(`loading.skeleton.check_shapes`), so a 9B file never loads into a 4B skeleton.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..variants import VARIANTS, get_variant
from .checkpoint import Checkpoint
from .header import loads_bounded

ConfigLike = str | Path | dict[str, Any] | None

# What a diffusers folder's config.json says when flux2-int8 wrote (or saved) its INT8
# layers: diffusers' `from_pretrained` routes it to the quantizer this package registers
# (`loading.diffusers_quantizer`), and without flux2-int8 it refuses the folder instead
# of reading int8 weights as floats.
QUANT_METHOD = "flux2-int8"
FORMAT_NAME = "flux2-int8/w8a8"


def quantization_config(kept: list[str], quant_algo: str = "W8A8") -> dict[str, Any]:
    """The `quantization_config` entry of config.json; `kept` names the linears left in float."""
    return {"quant_method": QUANT_METHOD, "quant_algo": quant_algo, "format": FORMAT_NAME, "ignore": sorted(kept)}


def resolve_config(config: ConfigLike, checkpoint: Checkpoint) -> dict[str, Any]:
    """The diffusers config to build, from the argument, the checkpoint's folder, or its shapes."""
    if config is None:
        return _clean(checkpoint.config) if checkpoint.config else infer_config(checkpoint)
    if isinstance(config, dict):
        return _clean(config)
    if str(config).lower() in VARIANTS:
        return get_variant(str(config)).architecture.transformer_config()
    return _read_config_folder(Path(config))


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    """Drop keys diffusers would reject or misread (ModelOpt's quantization_config, metadata)."""
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "quantization_config"}


def _read_config_folder(folder: Path) -> dict[str, Any]:
    for candidate in (folder / "config.json", folder / "transformer" / "config.json", folder):
        if candidate.is_file():
            try:
                document = loads_bounded(candidate.read_bytes())
            except ValueError as error:  # bad JSON, bad UTF-8, too deep
                raise ConfigError(f"{candidate}: not valid JSON ({error})") from None
            if not isinstance(document, dict):
                raise ConfigError(f"{candidate}: must hold a JSON object")
            return _clean(document)
    raise ConfigError(f"config '{folder}' is neither a variant ({', '.join(VARIANTS)}) nor a folder holding config.json")


def _block_count(checkpoint: Checkpoint, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}\.(\d+)\.")
    indices = {int(m.group(1)) for key in checkpoint.tensors if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_config(checkpoint: Checkpoint) -> dict[str, Any]:
    """A `Flux2Transformer2DModel` config read off the checkpoint's tensor shapes."""
    try:
        hidden, in_channels = checkpoint.shape("x_embedder.weight")
        joint_attention_dim = checkpoint.shape("context_embedder.weight")[1]
        head_dim = checkpoint.shape("transformer_blocks.0.attn.norm_q.weight")[0]
        mlp_hidden = checkpoint.shape("transformer_blocks.0.ff.linear_in.weight")[0] // 2
        time_channels = checkpoint.shape("time_guidance_embed.timestep_embedder.linear_1.weight")[1]
        out_channels = checkpoint.shape("proj_out.weight")[0]
    except KeyError as missing:
        raise ConfigError(f"{checkpoint.path}: shapes fit no FLUX.2 config: tensor {missing} is missing") from None
    if hidden % head_dim or head_dim % 4:
        raise ConfigError(f"{checkpoint.path}: shapes fit no FLUX.2 config: hidden size {hidden} and head dim {head_dim} do not divide")
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": None if out_channels == in_channels else out_channels,
        "num_layers": _block_count(checkpoint, "transformer_blocks"),
        "num_single_layers": _block_count(checkpoint, "single_transformer_blocks"),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": joint_attention_dim,
        "timestep_guidance_channels": time_channels,
        "mlp_ratio": mlp_hidden / hidden,
        "axes_dims_rope": (head_dim // 4,) * 4,
        "rope_theta": 2000,
        "eps": 1e-6,
        "guidance_embeds": "time_guidance_embed.guidance_embedder.linear_1.weight" in checkpoint.tensors,
    }
