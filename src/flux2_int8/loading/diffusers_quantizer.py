"""diffusers' `from_pretrained` for folders with flux2-int8 layers: a registered quantizer.

A folder whose config.json says `quantization_config.quant_method == "flux2-int8"` (our
`quantize --format diffusers` export, or `save_pretrained` of a transformer loaded by
`load_transformer`) holds int8 weights and float32 scales under diffusers names. This
quantizer lets `Flux2Transformer2DModel.from_pretrained(folder)` build it with our
layers, through diffusers' own extension points (`DiffusersQuantizer`,
`AUTO_QUANTIZER_MAPPING`, `AUTO_QUANTIZATION_CONFIG_MAPPING`):

1. `maybe_update_loaded_keys` reads the weight files' headers into a `Checkpoint` and
   validates them (`formats.validate.check_structure`), as `load_transformer` does;
2. `_process_model_before_weight_loading` swaps in `Int8Linear` / `Fp8Linear` on the
   meta model, chosen by each weight's dtype in the header;
3. `create_quantized_param` places weights as stored and scales as float32 in the
   layer's shape, each checked for NaN, zero, negative and infinite values.

diffusers casts every floating tensor of the state dict to the load dtype before a
quantizer sees it (`load_model_dict_into_meta`); a bf16 scale would lose 16 bits of the
calibration, so scales travel through that step as their int32 bit pattern
(`maybe_update_state_dict`) and are viewed back as float32 when placed.

`register()` is called when `flux2_int8.loading` is imported (and by `import flux2_int8`
when diffusers is already imported), so nothing is needed beyond importing the package.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import torch
from diffusers.quantizers import auto
from diffusers.quantizers.base import DiffusersQuantizer
from diffusers.quantizers.quantization_config import QuantizationConfigMixin
from torch import nn

from ..errors import CheckpointError
from ..formats.checkpoint import Checkpoint, checkpoint_from_headers
from ..formats.config import FORMAT_NAME, QUANT_METHOD
from ..formats.header import read_header
from ..formats.scales import SCALE_PARAMS, canonical_scale, check_scale_values
from ..formats.validate import check_structure
from ..int8.linear import Fp8Linear, Int8Linear
from ..int8.rotation import check_rotation_matrix
from .skeleton import swap_quantized_linears

_QUANTIZED_LAYERS = (Int8Linear, Fp8Linear)
_PLACED_PARAMS = ("weight", *SCALE_PARAMS, "rotation")
# float32 tensors that must not pass through diffusers' cast to the load dtype.
_FLOAT32_PARAMS = (*SCALE_PARAMS, "rotation")


class Flux2Int8Method(str, Enum):
    """diffusers reads `quant_method.value`; a str enum serialises as the plain string."""

    FLUX2_INT8 = QUANT_METHOD


class Flux2Int8Config(QuantizationConfigMixin):
    """The `quantization_config` of a flux2-int8 folder (see `formats.config.quantization_config`)."""

    def __init__(self, quant_algo: str = "W8A8", format: str = FORMAT_NAME, ignore: list[str] | None = None, **kwargs: Any) -> None:
        self.quant_method = Flux2Int8Method.FLUX2_INT8
        self.quant_algo = quant_algo
        self.format = format
        self.ignore = list(ignore or [])

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "quant_method": QUANT_METHOD}

    def to_diff_dict(self) -> dict[str, Any]:
        """The whole config (the mixin's `__repr__` asks for a diff against defaults)."""
        return self.to_dict()


class Flux2Int8Quantizer(DiffusersQuantizer):
    """Loads pre-quantized flux2-int8 folders; it does not quantize float weights."""

    requires_calibration = True  # pre-quantized only: calibration is `flux2-int8 quantize`
    use_keep_in_fp32_modules = False

    def __init__(self, quantization_config: Flux2Int8Config, **kwargs: Any) -> None:
        super().__init__(quantization_config, **kwargs)
        self.checkpoint: Checkpoint | None = None

    def validate_environment(self, *args: Any, **kwargs: Any) -> None:
        """Nothing beyond torch and diffusers is needed."""

    def maybe_update_loaded_keys(self, loaded_keys: list[str], checkpoint_files: list[str]) -> list[str]:
        files = [Path(f) for f in checkpoint_files]
        self.checkpoint = checkpoint_from_headers(files[0].parent, [read_header(f) for f in files], config=None)
        check_structure(self.checkpoint)
        return loaded_keys

    def _process_model_before_weight_loading(self, model: nn.Module, **kwargs: Any) -> None:
        if self.checkpoint is None:
            raise ValueError("flux2-int8 folders load from safetensors weight files (use_safetensors=True)")
        static = {name for name in self.checkpoint.linear_kinds if f"{name}.input_scale" in self.checkpoint.tensors}
        swap_quantized_linears(model, self.checkpoint, static)

    def maybe_update_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return {key: value.view(torch.int32) if _is_float32_scale(key, value) else value for key, value in state_dict.items()}

    def check_if_quantized_param(self, model: nn.Module, param_value: torch.Tensor, param_name: str, state_dict: dict[str, Any], **kwargs: Any) -> bool:
        module, _, name = param_name.rpartition(".")
        return name in _PLACED_PARAMS and isinstance(model.get_submodule(module), _QUANTIZED_LAYERS)

    def check_quantized_param_shape(self, param_name: str, current_param: torch.Tensor, loaded_param: torch.Tensor) -> bool:
        """Stored scales may differ in shape from the layer's ([N, 1] for [N], [1] for 0-d)."""
        return True

    def create_quantized_param(self, model: nn.Module, param_value: torch.Tensor, param_name: str, target_device: torch.device, *args: Any, **kwargs: Any) -> None:
        module_name, _, name = param_name.rpartition(".")
        layer = model.get_submodule(module_name)
        if name == "weight":
            layer.weight = nn.Parameter(param_value.to(target_device), requires_grad=False)
            return
        scale = param_value.view(torch.float32) if param_value.dtype == torch.int32 else param_value
        assert self.checkpoint is not None
        if name == "rotation":
            problem = check_rotation_matrix(scale)
            if problem:
                raise CheckpointError(self.checkpoint.path, problem, tensor=param_name)
            layer.rotation = scale.float().to(target_device)
            return
        check_scale_values(self.checkpoint.path, param_name, scale)
        setattr(layer, name, canonical_scale(name, scale, layer.out_features).to(target_device))

    def _process_model_after_weight_loading(self, model: nn.Module, **kwargs: Any) -> nn.Module:
        model.register_to_config(quantization_config=self.quantization_config.to_dict())
        return model.requires_grad_(False)

    @property
    def is_serializable(self) -> bool:
        return True

    @property
    def is_trainable(self) -> bool:
        return False

    @property
    def is_compileable(self) -> bool:
        return True


def _is_float32_scale(key: str, value: torch.Tensor) -> bool:
    return key.rpartition(".")[2] in _FLOAT32_PARAMS and value.dtype == torch.float32


def register() -> None:
    """Make diffusers' `from_pretrained` route `quant_method: flux2-int8` folders here (idempotent)."""
    auto.AUTO_QUANTIZER_MAPPING[QUANT_METHOD] = Flux2Int8Quantizer
    auto.AUTO_QUANTIZATION_CONFIG_MAPPING[QUANT_METHOD] = Flux2Int8Config
