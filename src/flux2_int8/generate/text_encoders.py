"""The text encoder `load_pipeline` hands diffusers: the base's, cut (BF16 or INT8 at load), or an INT8 file.

Every choice is cut to the layers the pipeline reads (`loading.text_encoder_cut`); the
bytes this leaves out are logged, so a user sees what the cut saved.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, PreTrainedModel

from ..errors import ConfigError
from ..loading import load_text_encoder
from ..loading.text_encoder import load_float_text_encoder, text_encoder_folder
from ..loading.text_encoder_cut import full_encoder_bytes, module_bytes
from ..loading.text_encoder_int8 import load_int8_text_encoder

logger = logging.getLogger("flux2_int8")

BASE_CHOICES = ("bf16", "int8")


def text_encoder_choice(text_encoder: str | Path | None) -> str | None:
    """"bf16" (the base's, also for None) or "int8" (the base's, quantized at load), or None for a file path."""
    if text_encoder is None:
        return "bf16"
    if isinstance(text_encoder, str) and text_encoder.strip().lower() in BASE_CHOICES:
        return text_encoder.strip().lower()
    return None


def load_base_text_encoder(folder: Path, choice: str, device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
    """The base folder's encoder, cut, in `dtype` ("bf16": float layers stay in the compute dtype) or INT8."""
    if choice == "int8":
        model, _ = load_int8_text_encoder(folder, device=device, dtype=dtype)
    elif choice == "bf16":
        model = load_float_text_encoder(folder, device=device, dtype=dtype)
    else:
        raise ConfigError(f"text_encoder '{choice}': expected 'bf16', 'int8' or an INT8 text encoder file")
    log_cut(model, AutoConfig.from_pretrained(text_encoder_folder(folder)), dtype)
    return model


def load_file_text_encoder(path: Path, folder: Path, device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
    model = load_text_encoder(path, config=folder, device=device, dtype=dtype)
    log_cut(model, AutoConfig.from_pretrained(text_encoder_folder(folder)), dtype)
    return model


def log_cut(model: PreTrainedModel, full_config: object, dtype: torch.dtype) -> int:
    """Log (and return) the bytes the cut encoder holds less than the whole BF16 `Qwen3ForCausalLM` would."""
    full = full_encoder_bytes(full_config, dtype)
    held = module_bytes(model)
    logger.info("text encoder: %d of %d layers (the pipeline reads up to its layer %d), no final norm, no LM head: %s bytes held, %s fewer than the whole model in %s (%s)", model.config.num_hidden_layers, full_config.num_hidden_layers, model.config.num_hidden_layers, f"{held:,}", f"{full - held:,}", str(dtype).removeprefix("torch."), f"{full:,}")
    return full - held
