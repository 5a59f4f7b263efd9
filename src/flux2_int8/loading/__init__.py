"""Checkpoint files -> models."""

from .text_encoder import load_text_encoder
from .transformer import load_transformer

__all__ = ["load_text_encoder", "load_transformer"]
