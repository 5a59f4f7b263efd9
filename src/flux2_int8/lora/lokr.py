"""PEFT LoKr layers for `Int8Linear` and `Fp8Linear`, so diffusers' LoKr loading works on quantized models.

diffusers keeps a LoKr a LoKr: `load_lora_adapter` builds a PEFT `LoKrConfig` from
the file's `lokr_w1` / `lokr_w2` (or `_a` / `_b`) shapes, and PEFT wraps each target
in its `lokr.Linear`, which accepts only `nn.Linear`. These types take its place for
our layers (`register_peft_layers` routes PEFT's LoKr dispatch to them) and behave as
the LoRA types in `layers.py` do:

- Unfused, the quantized base runs untouched and the update runs in the activation
  dtype on the *unquantized* input: y = base(x) + scale * (w1 (x) w2) x. The Kronecker
  product is never built: with x viewed as [..., b, d], (w1 (x) w2) x is
  w1 @ (x @ w2.T), about (a + d) / (a * d) of a dense [N, K] product's work and memory.
- Each adapter's scale is a 0-d tensor too (`lokr_scale_tensor`): no recompile on
  `set_adapters`.
- Fusing re-quantizes the original weight plus scale * (w1 (x) w2) per channel, and
  unfusing restores the original tensors bit for bit (`QuantizedAdapterLayer`).

Training-only features (module and rank dropout) are not applied: these layers are
for inference.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from peft.tuners.lokr.layer import Linear as PeftLoKrLinear
from peft.tuners.lokr.layer import factorization
from torch import nn

from ..int8.linear import Fp8Linear, Int8Linear
from .layers import QuantizedAdapterLayer, refuse_stacking, requantize_fp8, requantize_int8


class _QuantizedLoKrLinear(QuantizedAdapterLayer, PeftLoKrLinear):
    """PEFT's `lokr.Linear`, over a base layer whose weight is quantized (see the module docstring)."""

    other_param_names = (*PeftLoKrLinear.other_param_names, "lokr_scale_tensor")

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: Any, **kwargs: Any) -> None:
        refuse_stacking(base_layer, "LoKr")
        with warnings.catch_warnings():  # PEFT warns that it does not know the layer type: it is why we are here
            warnings.filterwarnings("ignore", message="Unsupported layer type", category=UserWarning)
            super().__init__(base_layer, adapter_name, config=config, **kwargs)  # adds the first adapter

    def _holds(self, name: str) -> bool:
        return name in self._available_adapters

    # --- adapters and their scales -------------------------------------------------

    def update_layer(self, adapter_name: str, r: int, alpha: float, config: Any, **kwargs: Any) -> None:
        """PEFT's `LoKrLayer.update_layer` for a linear base: it tests for `nn.Linear`, which ours are not.

        The factor shapes follow the same rule, so the file's `lokr_w1` / `lokr_w2` (or
        `_a` / `_b`) load into them as they would on a float layer.
        """
        if r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        self._add_scale_tensor("lokr_scale_tensor", adapter_name)
        self.r[adapter_name], self.alpha[adapter_name] = r, alpha
        self.scaling[adapter_name] = alpha / r
        self.rank_dropout[adapter_name] = config.rank_dropout
        self.module_dropout[adapter_name] = config.module_dropout
        self.rank_dropout_scale[adapter_name] = config.rank_dropout_scale
        base = self.get_base_layer()
        shape = (factorization(base.out_features, config.decompose_factor), factorization(base.in_features, config.decompose_factor))
        use_w1 = not (config.decompose_both and r < max(shape[0][0], shape[1][0]) / 2)
        use_w2 = not (r < max(shape[0][1], shape[1][1]) / 2)
        self.create_adapter_parameters(adapter_name, r, shape, use_w1, use_w2, use_effective_conv2d=False)
        if not config.init_weights:
            self.reset_adapter_parameters_random(adapter_name)
        elif config.init_weights == "lycoris":
            self.reset_adapter_parameters_lycoris_way(adapter_name)
        else:
            self.reset_adapter_parameters(adapter_name)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    # --- unfused forward -------------------------------------------------------------

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """x [..., K] in the compute dtype -> [..., N]: the quantized base plus each active adapter's update."""
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if self._holds(name):
                result = result + self._branch(name, x).to(result.dtype)
        return result

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """scale * (w1 (x) w2) x in x's dtype, without building the product: w1 [a, b], w2 [c, d], K = b * d, N = a * c."""
        w1, w2 = self._factor(name, "w1", x.dtype), self._factor(name, "w2", x.dtype)
        leading = x.shape[:-1]
        hidden = x.reshape(*leading, w1.shape[1], w2.shape[1]) @ w2.t()  # [..., b, c]
        out = (w1 @ hidden).reshape(*leading, w1.shape[0] * w2.shape[0])  # [..., a, c] -> [..., N]
        return out * self.lokr_scale_tensor[name].to(x.dtype)

    def _factor(self, name: str, which: str, dtype: torch.dtype) -> torch.Tensor:
        """`lokr_w1` / `lokr_w2` as stored, or the product of its `_a` [., r] and `_b` [r, .] halves, in `dtype`."""
        full = getattr(self, f"lokr_{which}")
        if name in full:
            return full[name].to(dtype)
        return getattr(self, f"lokr_{which}_a")[name].to(dtype) @ getattr(self, f"lokr_{which}_b")[name].to(dtype)

    # --- fusing ----------------------------------------------------------------------

    def _delta(self, name: str) -> torch.Tensor:
        """scale * (w1 (x) w2) as float32 [N, K]."""
        w1, w2 = self._factor(name, "w1", torch.float32), self._factor(name, "w2", torch.float32)
        return torch.kron(w1, w2) * float(self.scaling[name])

    def __repr__(self) -> str:
        return "lokr." + nn.Module.__repr__(self)


class Int8LoKrLinear(_QuantizedLoKrLinear):
    """LoKr over an `Int8Linear`; fusing re-quantizes to int8 per channel."""

    def _requantize(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return requantize_int8(weight)


class Fp8LoKrLinear(_QuantizedLoKrLinear):
    """LoKr over an `Fp8Linear` (for comparisons); fusing re-quantizes to float8 per channel."""

    def _requantize(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return requantize_fp8(weight)


# Base layer type -> its LoKr layer type, as `register_peft_layers` hands them to PEFT's LoKr dispatch.
CUSTOM_LOKR_LAYERS: dict[type[nn.Module], type[nn.Module]] = {Int8Linear: Int8LoKrLinear, Fp8Linear: Fp8LoKrLinear}
