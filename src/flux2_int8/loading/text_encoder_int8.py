"""`text_encoder="int8"`: the base's BF16 Qwen3 quantized at load time, cached on disk.

No calibration is needed: weights are quantized per output channel with the package's
own rule (`int8.weights`, the one `quantize` and LoRA fusing use) and activations are
quantized per token at run time (`Int8Linear(activations="dynamic")`). Only the cut
encoder's tensors (`text_encoder_cut`) are read and quantized, one at a time, so the
BF16 model is never held whole. The result is written once to the flux2-int8 cache
(`$FLUX2_INT8_CACHE`, else `~/.cache/flux2_int8`, under `text-encoders/`), through the
atomic writer (an interrupted run leaves no half file), named by a key over the source
files' identities (the hub's content hash where the file comes from the HF cache), the
cut, the recipe and the package version; the next load reads the INT8 file directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from ..errors import CheckpointError
from ..formats.header import read_header
from ..formats.write import write_safetensors_atomic
from ..int8.weights import quantize_weight, weight_scale_per_channel
from ..version import __version__
from .text_encoder import CONFIG_METADATA, load_text_encoder, read_stored, stored_tensors, text_encoder_folder, weight_files
from .text_encoder_cut import cut_config, cut_for, empty_cut_encoder

logger = logging.getLogger("flux2_int8")

CACHE_ENV = "FLUX2_INT8_CACHE"
RECIPE = "w8a8-per-channel-weights-dynamic-per-token-activations-v1"
CACHE_FORMAT = "flux2-int8/w8a8-text-encoder-dynamic"


@dataclass(frozen=True)
class CachedEncoder:
    """Where the INT8 encoder came from: `path` in the cache, whether this load made it, and how long it took."""

    path: Path
    created: bool
    seconds: float


def cache_root() -> Path:
    """The flux2-int8 cache folder: `$FLUX2_INT8_CACHE`, else `~/.cache/flux2_int8` (as the tiny pipeline's)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "flux2_int8")


def load_int8_text_encoder(
    folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, layers: tuple[int, ...] | None = None
) -> tuple[PreTrainedModel, CachedEncoder]:
    """The base's text encoder as W8A8 (dynamic activations), cut to `layers`; from the cache when it is there.

    Parameters
    ----------
    folder : str or Path
        A pipeline folder (its `text_encoder/`) or a transformers text encoder folder with BF16 safetensors.
    device, dtype
        Where the model goes, and the dtype of its float layers (embedding, norms).
    layers : tuple of int, optional
        The hidden states the pipeline reads (default: the pipeline's own).

    Returns
    -------
    (PreTrainedModel, CachedEncoder)
        The headless Qwen3 with `Int8Linear` layers, and where its file is.
    """
    started = time.perf_counter()
    component = text_encoder_folder(folder)
    files = weight_files(component)
    config = AutoConfig.from_pretrained(component)
    cut = cut_for(config, layers)
    path = cache_root() / "text-encoders" / f"qwen3-int8-{cache_key(files, cut.depth, cut.full_depth, dtype)}.safetensors"
    created = not _usable(path)
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        headers = [read_header(file) for file in files]
        model = empty_cut_encoder(config, cut, dtype)
        linears = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
        state = _quantized_state(stored_tensors(headers, cut), linears, dtype)
        metadata = {"format": CACHE_FORMAT, "recipe": RECIPE, "producer": f"flux2-int8 {__version__}", CONFIG_METADATA: cut_config(config, cut).to_json_string(use_diff=False), "source": str(component)}
        write_safetensors_atomic(path, state, metadata)
        del state
    model = load_text_encoder(path, device=device, dtype=dtype, layers=layers)
    record = CachedEncoder(path, created, time.perf_counter() - started)
    logger.info("text encoder: INT8 (per-channel weights, dynamic per-token activations) %s %s in %.2f s", "quantized at load time and cached as" if created else "loaded from the cache", path, record.seconds)
    return model, record


def cache_key(files: list[Path], depth: int, full_depth: int, dtype: torch.dtype) -> str:
    """A digest of what decides the cached file's bytes: the sources, the cut, the recipe, the float dtype, the package version."""
    document = {"sources": [[file.name, source_identity(file)] for file in files], "depth": depth, "full_depth": full_depth, "recipe": RECIPE, "dtype": str(dtype), "version": __version__}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]


def source_identity(file: Path) -> str:
    """The hub's content hash for a file in the HF cache (its blob's name: the sha256 or etag), else its path, size and mtime.

    Hashing a local 16 GB encoder on every load would cost more than the load; a file
    that changes in place changes its mtime.
    """
    resolved = file.resolve()
    if resolved.parent.name == "blobs":
        return f"hub:{resolved.name}"
    stat = resolved.stat()
    return f"file:{resolved}:{stat.st_size}:{stat.st_mtime_ns}"


def _usable(path: Path) -> bool:
    """A complete cache file (the atomic writer never leaves a partial one; a damaged one is rebuilt)."""
    if not path.is_file():
        return False
    try:
        return read_header(path).metadata.get("recipe") == RECIPE
    except CheckpointError:
        logger.warning("text encoder cache %s is damaged; rebuilding it", path)
        return False


def _quantized_state(stored: dict, linears: set[str], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read each kept tensor once; linear weights -> int8 [N, K] + float32 weight_scale [N], the rest -> `dtype`."""
    state: dict[str, torch.Tensor] = {}
    for _, name, _, tensor in read_stored(stored):
        module, _, param = name.rpartition(".")
        if module in linears and param == "weight":
            scale = weight_scale_per_channel(tensor)
            state[name] = quantize_weight(tensor, scale)
            state[f"{module}.weight_scale"] = scale
        else:
            state[name] = tensor.to(dtype)
    return state
