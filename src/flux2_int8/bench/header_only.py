"""Real-size klein pipelines as headers only: every file's header is true, its data a hole (no disk, no memory).

A product part, not test code: `scripts/plan_klein_table.py` and `benchmarks/offload_modes.py`
build on it, and the product never imports `testing/`.

What `flux2-int8 plan` reads, at the sizes of the published models, on a machine that
cannot download them: tests hold the plan's bytes against meta-built models, and the
table in docs/generate.md is the plan run on these folders
(`python scripts/plan_klein_table.py`). The Qwen3 configs are the published Qwen3-4B
(klein 4B) and Qwen3-8B (klein 9B) ones (`bench.random_weights.qwen3_config_for`); the VAE is diffusers' `AutoencoderKLFlux2` default.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLFlux2
from torch import nn
from transformers import Qwen3ForCausalLM

from .random_weights import qwen3_config_for
from ..formats.keys import diffusers_to_bfl
from ..loading.skeleton import build_empty_model
from ..variants import get_variant
from ..quantization.recipe import Recipe

# safetensors dtype names -> torch dtypes.
TORCH_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def meta_int8_state(model: nn.Module, recipe: Recipe = Recipe(), weight_dtype: torch.dtype = torch.int8) -> dict[str, torch.Tensor]:
    """The INT8 (or FP8) state dict of a model built on the meta device: shapes and dtypes only."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        module, _, param = key.rpartition(".")
        if param == "weight" and isinstance(model.get_submodule(module), nn.Linear) and not recipe.keeps(module):
            state[key] = torch.empty(tensor.shape, dtype=weight_dtype, device="meta")
            rows = (tensor.shape[0], 1) if weight_dtype == torch.int8 else ()
            state[f"{module}.weight_scale"] = torch.empty(rows, device="meta")
            state[f"{module}.input_scale"] = torch.empty((), device="meta")
        else:
            state[key] = torch.empty(tensor.shape, dtype=torch.bfloat16, device="meta")
    return state


def write_sparse_header(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file with a real header and a data section that is a hole in the file.

    On disk and in memory it costs only its header, so real 9B layouts can be tested.
    """
    names = {dtype: name for name, dtype in TORCH_DTYPES.items()}
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[key] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path = Path(path)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def meta_text_encoder(size: str) -> Qwen3ForCausalLM:
    """The whole Qwen3 text encoder of klein 4B / 9B on the meta device (bf16)."""
    with init_empty_weights():
        model = Qwen3ForCausalLM(qwen3_config_for(get_variant(size).architecture)).to(torch.bfloat16)
    model.tie_weights()
    return model


def _stored(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict as `save_pretrained` stores it: a tied tensor once, under its first name."""
    seen: set[int] = set()
    state = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            state[key] = tensor
    return state


def write_header_only_pipeline(folder: str | Path, variant: str = "klein-9b") -> Path:
    """A klein pipeline folder (BF16 transformer, Qwen3, VAE) with sparse header-only weights."""
    size = get_variant(variant).architecture.name
    folder = Path(folder)
    for component in ("transformer", "text_encoder", "vae", "scheduler", "tokenizer"):
        (folder / component).mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "Flux2KleinPipeline", "is_distilled": get_variant(variant).distilled, "transformer": ["diffusers", "Flux2Transformer2DModel"], "text_encoder": ["transformers", "Qwen3ForCausalLM"], "vae": ["diffusers", "AutoencoderKLFlux2"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "tokenizer": ["transformers", "Qwen2TokenizerFast"]}))
    transformer = build_empty_model(get_variant(variant).architecture.transformer_config())
    (folder / "transformer" / "config.json").write_text(json.dumps(dict(transformer.config)))
    write_sparse_header(folder / "transformer" / "diffusion_pytorch_model.safetensors", {k: v.to(torch.bfloat16) for k, v in transformer.state_dict().items()})
    encoder = meta_text_encoder(size)
    (folder / "text_encoder" / "config.json").write_text(encoder.config.to_json_string())
    write_sparse_header(folder / "text_encoder" / "model.safetensors", _stored(encoder))
    with torch.device("meta"):
        vae = AutoencoderKLFlux2()
    (folder / "vae" / "config.json").write_text(json.dumps(dict(vae.config)))
    write_sparse_header(folder / "vae" / "diffusion_pytorch_model.safetensors", {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in vae.state_dict().items()})
    return folder


def write_header_only_int8_transformer(path: str | Path, variant: str = "klein-9b") -> Path:
    """A BFL single-file INT8 W8A8 transformer of the variant's size (the published layout), header only."""
    model = build_empty_model(get_variant(variant).architecture.transformer_config())
    return write_sparse_header(path, diffusers_to_bfl(meta_int8_state(model)), {"format": "bfl-int8"})
