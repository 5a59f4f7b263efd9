"""Teaching PEFT our LoRA layer types, once per process.

PEFT's extension point for custom layers is per config: `LoraConfig._register_custom_module`.
diffusers builds that config itself inside `load_lora_weights` / `load_lora_adapter`,
so there is no config for us to hand over. Registering here makes every `LoraConfig`
built afterwards carry our mapping (by wrapping `LoraConfig.__post_init__`, the one
place each config passes through), which is what lets diffusers' API work unchanged.
The mapping matches only `Int8Linear` / `Fp8Linear`, so other models see no change.
"""

from __future__ import annotations

from typing import Any

_registered = False


def register_peft_layers() -> None:
    """Make PEFT wrap `Int8Linear` / `Fp8Linear` in our LoRA layers (idempotent; the loaders call it)."""
    global _registered
    if _registered:
        return
    from peft import LoraConfig

    from .layers import CUSTOM_LORA_LAYERS

    original_post_init = LoraConfig.__post_init__

    def __post_init__(self: Any) -> None:
        original_post_init(self)
        self._register_custom_module(CUSTOM_LORA_LAYERS)

    LoraConfig.__post_init__ = __post_init__
    _registered = True
