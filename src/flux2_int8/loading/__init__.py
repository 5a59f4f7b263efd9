"""Checkpoint files -> models: the transformer (`transformer`, on its meta `skeleton`) and
the INT8 text encoder (`text_encoder`), following the plan `formats` draws from the headers.
Importing it registers the diffusers quantizer (`diffusers_quantizer`), so diffusers'
`from_pretrained` reads folders whose config.json says `quant_method: flux2-int8`.

May import: errors, variants, formats, int8.
"""

from . import diffusers_quantizer
from .text_encoder import load_text_encoder
from .transformer import load_transformer

diffusers_quantizer.register()

__all__ = ["load_text_encoder", "load_transformer"]
