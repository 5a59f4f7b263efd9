"""The compute dtype argument, spelled `dtype` (ours, transformers') or `torch_dtype` (diffusers')."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def resolve_dtype(dtype: torch.dtype | None, torch_dtype: torch.dtype | None) -> torch.dtype:
    """`dtype` and diffusers' `torch_dtype` name one thing: accept either, refuse two different ones."""
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ConfigError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass one of them")
    chosen = dtype or torch_dtype or torch.bfloat16
    if not isinstance(chosen, torch.dtype) or not chosen.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch.dtype such as torch.bfloat16, not {chosen!r}")
    return chosen
