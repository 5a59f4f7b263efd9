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
    """Make PEFT wrap `Int8Linear` / `Fp8Linear` in our LoRA layers, for every LoRA config made afterwards.

    Idempotent and cheap after the first call. `load_transformer` calls it, so a model
    loaded by this package takes `pipe.load_lora_weights(...)` at once; call it yourself
    only for quantized models you build by hand.

    Examples
    --------
    >>> from flux2_int8.lora import register_peft_layers
    >>> register_peft_layers()
    """
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
