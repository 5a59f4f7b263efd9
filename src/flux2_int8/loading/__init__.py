"""Checkpoint files -> models."""

from .transformer import load_transformer

__all__ = ["load_transformer"]
