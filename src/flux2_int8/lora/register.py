"""Teaching PEFT (and diffusers' LoKr loader) our layer types, once per process.

LoRA: PEFT's extension point for custom layers is per config: `LoraConfig._register_custom_module`.
diffusers builds that config itself inside `load_lora_weights` / `load_lora_adapter`,
so there is no config for us to hand over. Registering here makes every `LoraConfig`
built afterwards carry our mapping (by wrapping `LoraConfig.__post_init__`, the one
place each config passes through), which is what lets diffusers' API work unchanged.

LoKr: `LoKrConfig` has no such extension point; PEFT picks a LoKr layer type in
`LoKrModel._create_new_module`, which knows only `nn.Linear` and convolutions. That
one method is wrapped: our layer types for `Int8Linear` / `Fp8Linear`, PEFT's own
choice for everything else.

Fused q/k/v: a BFL-layout LoKr (ai-toolkit's) targets the fused q/k/v projection, which
cannot be split into separate q/k/v factors, so diffusers calls the transformer's
`fuse_qkv_projections()` before adding it. diffusers' fusion concatenates float weights
into a new `nn.Linear`; on a transformer holding our layers it is routed to
`flux2_int8.fuse_qkv_projections`, which concatenates the int8 / float8 weights and
their per-channel scales exactly. The mappings match only our layers and models
holding them, so other models see no change.
"""

from __future__ import annotations

from typing import Any

_registered = False


def register_peft_layers() -> None:
    """Make PEFT wrap `Int8Linear` / `Fp8Linear` in our LoRA and LoKr layers, for every adapter loaded afterwards.

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
    _register_lora()
    _register_lokr()
    _route_qkv_fusion()
    _registered = True


def _register_lora() -> None:
    from peft import LoraConfig

    from .layers import CUSTOM_LORA_LAYERS

    original_post_init = LoraConfig.__post_init__

    def __post_init__(self: Any) -> None:
        original_post_init(self)
        self._register_custom_module(CUSTOM_LORA_LAYERS)

    LoraConfig.__post_init__ = __post_init__


def _register_lokr() -> None:
    from peft.tuners.lokr.model import LoKrModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    from .lokr import CUSTOM_LOKR_LAYERS

    original = LoKrModel._create_new_module.__func__  # a classmethod

    def _create_new_module(cls: type, config: Any, adapter_name: str, target: Any, **kwargs: Any) -> Any:
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        layer_type = CUSTOM_LOKR_LAYERS.get(type(base))
        if layer_type is None:
            return original(cls, config, adapter_name, target, **kwargs)
        return layer_type(target, adapter_name, config=config, **kwargs)

    LoKrModel._create_new_module = classmethod(_create_new_module)


def _route_qkv_fusion() -> None:
    from diffusers import Flux2Transformer2DModel

    from ..int8.fusion import fuse_qkv_projections
    from ..int8.linear import Fp8Linear, Int8Linear

    original = Flux2Transformer2DModel.fuse_qkv_projections

    def fuse_qkv_projections_exactly(self: Any) -> None:
        if any(isinstance(module, (Int8Linear, Fp8Linear)) for module in self.modules()):
            fuse_qkv_projections(self)
        else:
            original(self)

    fuse_qkv_projections_exactly.__doc__ = original.__doc__
    Flux2Transformer2DModel.fuse_qkv_projections = fuse_qkv_projections_exactly
