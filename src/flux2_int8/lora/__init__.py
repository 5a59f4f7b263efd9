"""LoRA and LoKr on INT8 (and FP8) transformers, through diffusers' own LoRA API.

`register_peft_layers()` (called by the loaders) teaches PEFT our LoRA and LoKr layer
types, so `pipe.load_lora_weights(...)`, `set_adapters`, `fuse_lora` and the rest work
on an INT8 pipeline unchanged. `load_loras` adds the checks the CLI wants first (the file is a
LoRA, it fits this transformer). Naming a LoRA file from its header is `formats.foreign`'s
job. Exports are imported on first use, so `import flux2_int8.lora` does not import PEFT.

May import: errors, variants, formats, int8 (never loading and above).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

_LAZY_EXPORTS = {
    "register_peft_layers": ".register",
    "Int8LoraLinear": ".layers",
    "Fp8LoraLinear": ".layers",
    "Int8LoKrLinear": ".lokr",
    "Fp8LoKrLinear": ".lokr",
    "LoraSpec": ".spec",
    "parse_lora_spec": ".spec",
    "check_lora_fits": ".apply",
    "load_loras": ".apply",
}

if TYPE_CHECKING:
    from .apply import check_lora_fits, load_loras
    from .spec import LoraSpec, parse_lora_spec
    from .layers import Fp8LoraLinear, Int8LoraLinear
    from .lokr import Fp8LoKrLinear, Int8LoKrLinear
    from .register import register_peft_layers

__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


__all__ = sorted(_LAZY_EXPORTS)
