"""Checkpoint files -> models: the transformer (`transformer`, on its meta `skeleton`) and
the INT8 text encoder (`text_encoder`), following the plan `formats` draws from the headers.

May import: errors, variants, formats, int8.
"""

from .text_encoder import load_text_encoder
from .transformer import load_transformer

__all__ = ["load_text_encoder", "load_transformer"]
