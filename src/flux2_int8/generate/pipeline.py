"""`load_pipeline`: a standard diffusers `Flux2KleinPipeline` whose transformer is INT8.

Users get back the pipeline they already know how to call; only the transformer is
ours. When a checkpoint is given it is loaded first and handed to `from_pretrained`,
so the base's own BF16 transformer is neither downloaded nor loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel

from ..errors import ConfigError, Flux2Int8Error
from ..formats.checkpoint import open_checkpoint
from ..loading import load_transformer
from ..loading.config import infer_config
from ..variants import VARIANTS, architecture_of
from .hub import BaseSource, download_pipeline, parse_base, resolve_checkpoint, transformer_config_of

Offload = Literal["none", "model", "sequential"]
OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "sequential")
# The config entries that decide tensor shapes: a checkpoint must agree with the base on all.
_SHAPE_KEYS = ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim", "in_channels")


@dataclass(frozen=True)
class SamplingDefaults:
    """How a pipeline samples unless told otherwise (distilled: 4 steps, guidance unused)."""

    steps: int
    guidance: float


def sampling_defaults(pipeline: Flux2KleinPipeline) -> SamplingDefaults:
    """The published defaults for the pipeline's kind, read from its `is_distilled` flag."""
    distilled = bool(pipeline.config.get("is_distilled", False))
    variant = next(v for v in VARIANTS.values() if v.distilled == distilled)
    return SamplingDefaults(steps=variant.default_steps, guidance=variant.default_guidance)


def load_pipeline(
    base: str | Path,
    transformer: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.bfloat16,
    compile: bool = False,
    offload: Offload = "none",
    local_files_only: bool = False,
) -> Flux2KleinPipeline:
    """Load a FLUX.2 [klein] pipeline, optionally with an INT8 / BF16 / FP8 transformer checkpoint.

    `base` is a variant name (`klein-4b`, `klein-9b`, `klein-base-4b`, `klein-base-9b`), a
    hub repository id or a local pipeline folder. `transformer` is a checkpoint path (BFL
    single file, diffusers or ModelOpt folder) or a hub file `owner/repo/file.safetensors`.
    `device` defaults to CUDA when available. `offload` ("model" or "sequential") uses
    diffusers' CPU offload and needs CUDA. `compile` wraps the transformer in
    `torch.compile(fullgraph=True)`; the first call then compiles (slow), later ones are fast.
    """
    device = _resolve_device(device, offload)
    source = parse_base(base)
    model = None
    if transformer is not None:
        checkpoint = resolve_checkpoint(transformer, local_files_only)
        if source.variant is not None:  # checked before any download: a variant's shapes are known
            check_checkpoint_fits(checkpoint, source.variant.architecture.transformer_config(), source.spec)
        folder = _base_folder(source, skip_transformer_weights=True, local_files_only=local_files_only)
        config = transformer_config_of(folder)
        if source.variant is None:
            check_checkpoint_fits(checkpoint, config, source.spec)
        model = load_transformer(checkpoint, config=config, device=device if offload == "none" else "cpu", dtype=dtype)
    else:
        folder = _base_folder(source, skip_transformer_weights=False, local_files_only=local_files_only)
    pipeline = _from_pretrained(folder, model, source, dtype)
    _place(pipeline, device, offload)
    if compile:
        pipeline.transformer.compile(fullgraph=True)
    return pipeline


def check_checkpoint_fits(checkpoint: Path, base_config: dict[str, Any], base_label: str) -> None:
    """Refuse a checkpoint of another size than the base (e.g. 9B weights with a 4B base), from headers only."""
    found = infer_config(open_checkpoint(checkpoint))
    if all(found.get(key) == base_config.get(key) for key in _SHAPE_KEYS):
        return
    raise ConfigError(
        f"{checkpoint} holds {_describe(found)}, but the base '{base_label}' needs {_describe(base_config)}: "
        "pass a checkpoint made for that base, or the base the checkpoint was made for"
    )


def _describe(config: dict[str, Any]) -> str:
    shape = (
        f"{config.get('num_layers')} double + {config.get('num_single_layers')} single blocks, "
        f"hidden {config.get('num_attention_heads', 0) * config.get('attention_head_dim', 0)}, text dim {config.get('joint_attention_dim')}"
    )
    architecture = architecture_of(config)
    if architecture is None:
        return f"a transformer of {shape}"
    return f"a {architecture.name.rsplit('-', 1)[1].upper()}-size transformer ({shape})"


def _resolve_device(device: str | torch.device | None, offload: str) -> torch.device:
    """CUDA when available; offload is refused on CPU (it moves weights to a GPU and back)."""
    if offload not in OFFLOAD_MODES:
        raise ConfigError(f"unknown offload mode '{offload}': expected one of {', '.join(OFFLOAD_MODES)}")
    try:
        resolved = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise ConfigError(f"invalid device '{device}' ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    if offload != "none" and resolved.type != "cuda":
        raise ConfigError(f"offload '{offload}' keeps weights on the CPU and runs them on a CUDA GPU; with device '{resolved}' use offload 'none'")
    return resolved


def _base_folder(source: BaseSource, skip_transformer_weights: bool, local_files_only: bool) -> Path:
    if source.folder is not None:
        return source.folder
    assert source.repo_id is not None  # parse_base returns a folder or a repository
    return download_pipeline(source.repo_id, skip_transformer_weights, local_files_only)


def _from_pretrained(folder: Path, transformer: Flux2Transformer2DModel | None, source: BaseSource, dtype: torch.dtype) -> Flux2KleinPipeline:
    """Build the pipeline from local files only; a variant name decides `is_distilled`."""
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if transformer is not None:
        kwargs["transformer"] = transformer
    if source.variant is not None:
        kwargs["is_distilled"] = source.variant.distilled
    try:
        return Flux2KleinPipeline.from_pretrained(folder, **kwargs)
    except OSError as error:  # a missing or broken component file in the folder or cache
        raise Flux2Int8Error(f"{folder}: the pipeline cannot be loaded from this folder ({error})") from None


def _place(pipeline: Flux2KleinPipeline, device: torch.device, offload: str) -> None:
    if offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    else:
        pipeline.to(device)
