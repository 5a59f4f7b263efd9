"""PEFT LoRA layers for `Int8Linear` and `Fp8Linear`, so diffusers' LoRA API works on quantized models.

PEFT wraps each targeted layer in a LoRA layer type chosen by the base layer's class;
it knows `nn.Linear`, bitsandbytes, GPTQ and others, not our layers. These types plug
into PEFT's extension point for custom layers (`LoraConfig._register_custom_module`,
see `register_peft_layers`), and otherwise behave as PEFT's own `lora.Linear`: the
same adapter bookkeeping, `set_adapters`, `disable_lora`, deletion, mixed batches.

What differs, and why:

- Unfused, the quantized base runs untouched (same backend, same activation
  quantization) and the LoRA branch runs in the activation dtype on the *unquantized*
  input: y = base(x) + scale * B(A(x)). Quantizing the branch would add error for no
  speed, since it is two thin GEMMs.
- Each adapter's scale is also kept as a 0-d tensor that every write to `scaling` fills
  in place (`_ScaleMirror`), so `set_adapters(..., adapter_weights=...)` or a hotswap on
  a compiled model changes a tensor, not a Python float Dynamo would have burnt into the
  graph: no recompile.
- Fusing (`merge`) dequantizes the *original* weight, adds every merged adapter's
  delta and re-quantizes per output channel (new weight scales; the static
  `input_scale` is kept, since the layer's input does not change). The original
  tensors are kept, so `unmerge` restores them bit for bit instead of subtracting a
  delta from a rounded weight.

`QuantizedAdapterLayer` holds what LoRA and LoKr (see `lokr.py`) share: the scale
tensors, fusing and restoring, the device rule. Stacking a LoRA and a LoKr on one
quantized layer is refused (`refuse_stacking`): each would restore its own snapshot on
unfuse, and diffusers unfuses inner layers first, so the outer one would put back a
weight that still holds the inner adapter.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

from ..errors import Flux2Int8Error
from ..int8.kernels import FP8_MAX
from ..int8.linear import Fp8Linear, Int8Linear
from ..int8.rotation import rotate
from ..int8.weights import quantize_weight, weight_scale_per_channel


def requantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [N, K] -> (int8 [N, K], float32 [N]): the quantizer's own per-channel rule."""
    scale = weight_scale_per_channel(weight)
    return quantize_weight(weight, scale), scale


def requantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [N, K] -> (float8_e4m3fn [N, K], float32 [N]): per-channel amax / 448.

    Per channel rather than BFL's per tensor: `Fp8Linear` takes either, and a fused
    weight is ours to lay out, so the finer grid is free accuracy.
    """
    amax = weight.float().abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    quantized = torch.clamp(weight.float() / scale[:, None], -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return quantized, scale


def refuse_stacking(base_layer: nn.Module, kind: str) -> None:
    """Refuse to wrap an adapter layer of another kind (a LoRA over a LoKr, or the reverse).

    Unfused they would add up, but fusing could not be undone exactly (see the module docstring).
    """
    if isinstance(base_layer, BaseTunerLayer):
        raise Flux2Int8Error(
            f"cannot add a {kind} to an INT8/FP8 layer already wrapped by {type(base_layer).__name__}: "
            "a LoRA and a LoKr cannot share a quantized layer (once fused, unfusing could not restore its "
            "original weights exactly); unload the other adapter first, or use a BF16 transformer"
        )


class QuantizedAdapterLayer:
    """What LoRA and LoKr layers over `Int8Linear` / `Fp8Linear` share, mixed in before PEFT's layer class.

    A subclass says which adapters it holds (`_holds`), what each adds to the float
    weight (`_delta`), and how to re-quantize (`_requantize`); this class keeps each
    adapter's scale as a 0-d tensor (`_scale_tensors`) and fuses by re-quantizing.
    """

    _original_tensors: dict[str, torch.Tensor | None] | None = None
    scaling: dict[str, float]
    merged_adapters: list[str]

    def _holds(self, name: str) -> bool:
        raise NotImplementedError

    def _delta(self, name: str) -> torch.Tensor:
        """scale * the adapter's weight update, float32 [N, K], acting on the raw input x (`merge` adapts it to SmoothQuant)."""
        raise NotImplementedError

    def _requantize(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _merged_bias(self, merged: list[str]) -> torch.Tensor | None:
        """The fused bias, or None to keep the base layer's (only LoRA's `lora_bias` changes it)."""
        return None

    def _get_base_layer_device_and_dtype(self, base_layer: nn.Module) -> tuple[torch.device, None]:
        """The device only: PEFT would cast adapters to a float8 weight's dtype, as it does to a bf16 one."""
        return base_layer.weight.device, None

    # --- adapters and their scales -------------------------------------------------

    def _scale_tensors(self, attribute: str) -> BufferDict:
        """The layer's 0-d scale tensor per adapter, made on first use (PEFT's constructors reset modules)."""
        if attribute not in self._modules:  # type: ignore[attr-defined]
            setattr(self, attribute, BufferDict({}, persistent=False))
            self.scaling = _ScaleMirror(getattr(self, attribute), self.scaling)
        return getattr(self, attribute)

    def _add_scale_tensor(self, attribute: str, adapter_name: str) -> None:
        """A zero scale tensor for a new adapter; PEFT's `update_layer` then writes the scale through `scaling`."""
        device = self.get_base_layer().weight.device  # type: ignore[attr-defined]
        self._scale_tensors(attribute)[adapter_name] = torch.zeros((), dtype=torch.float32, device=device)

    # --- fusing ----------------------------------------------------------------------

    def _in_base_input_domain(self, delta: torch.Tensor) -> torch.Tensor:
        """delta [N, K] float32 in the basis the stored weight lives in.

        For a base that computes (x * s) @ W.T (SmoothQuant), W absorbs delta / s; a ConvRot
        base rotates (x * s) before its product, so that is then rotated as its weight was.
        """
        base = self.get_base_layer()  # type: ignore[attr-defined]
        if base.pre_quant_scale is not None:
            delta = delta / base.pre_quant_scale.float()[None, :]
        rotation = getattr(base, "rotation", None)
        return delta if rotation is None else rotate(delta, rotation.to(delta.device))

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Fuse adapters into the quantized weight: dequantize the original, add the deltas, re-quantize per channel."""
        names = [name for name in check_adapters_to_merge(self, adapter_names) if self._holds(name)]
        if not names:
            return
        base = self.get_base_layer()  # type: ignore[attr-defined]
        if self._original_tensors is None:
            self._original_tensors = {"weight": base.weight.data, "weight_scale": base.weight_scale, "bias": None if base.bias is None else base.bias.data}
        original = self._original_tensors
        merged = [*self.merged_adapters, *names]
        weight = original["weight"].float() * original["weight_scale"].float()[:, None]
        for name in merged:
            weight = weight + self._in_base_input_domain(self._delta(name)).to(weight.device)
        bias = self._merged_bias(merged)
        if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
            raise ValueError(f"NaNs detected in the merged weights. The adapter {names[0]} seems to be broken")
        quantized, scale = self._requantize(weight)
        base.weight = nn.Parameter(quantized, requires_grad=False)
        base.weight_scale = scale
        if bias is not None:
            base.bias = nn.Parameter(bias, requires_grad=False)
        self.merged_adapters.extend(names)

    def unmerge(self) -> None:
        """Put back the original quantized tensors, exactly as they were before the first merge."""
        if not self.merged or self._original_tensors is None:  # type: ignore[attr-defined]
            warnings.warn("Already unmerged. Nothing to do.")
            return
        base = self.get_base_layer()  # type: ignore[attr-defined]
        base.weight = nn.Parameter(self._original_tensors["weight"], requires_grad=False)
        base.weight_scale = self._original_tensors["weight_scale"]
        if self._original_tensors["bias"] is not None:
            base.bias = nn.Parameter(self._original_tensors["bias"], requires_grad=False)
        self._original_tensors = None
        self.merged_adapters.clear()


class _QuantizedLoraLinear(QuantizedAdapterLayer, PeftLoraLinear):
    """PEFT's `lora.Linear`, over a base layer whose weight is quantized (see the module docstring)."""

    other_param_names = (*PeftLoraLinear.other_param_names, "lora_scale_tensor")

    def __init__(self, base_layer: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        refuse_stacking(base_layer, "LoRA")
        super().__init__(base_layer, adapter_name, **kwargs)  # adds the first adapter (see update_layer)

    @property
    def lora_variants(self) -> dict[tuple[str, ...], None]:
        """Plain LoRA only: DoRA and the other variants read a float base weight."""
        return {(): None}

    def _get_in_out_features(self, module: nn.Module) -> tuple[int, int]:
        return module.in_features, module.out_features

    def _holds(self, name: str) -> bool:
        return name in self.lora_A

    # --- adapters and their scales -------------------------------------------------

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: Any, **kwargs: Any) -> None:
        self._add_scale_tensor("lora_scale_tensor", adapter_name)
        super().update_layer(adapter_name, r, lora_alpha, config=config, **kwargs)  # writes scaling[adapter_name]

    # --- unfused forward -------------------------------------------------------------

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """x [..., K] in the compute dtype -> [..., N]: the quantized base plus each active adapter's branch."""
        self._check_forward_args(x, *args, **kwargs)
        adapter_names = kwargs.pop("adapter_names", None)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(x, *args, adapter_names=adapter_names, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            result = result + self._branch(name, x).to(result.dtype)
        return result

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """scale * B(A(dropout(x))) in x's dtype (a no-op cast when the adapter is stored in it)."""
        lora_A, lora_B = self.lora_A[name], self.lora_B[name]
        hidden = F.linear(self.lora_dropout[name](x), lora_A.weight.to(x.dtype))
        bias = None if lora_B.bias is None else lora_B.bias.to(x.dtype)
        return F.linear(hidden, lora_B.weight.to(x.dtype), bias) * self.lora_scale_tensor[name].to(x.dtype)

    # --- fusing ----------------------------------------------------------------------

    def _delta(self, name: str) -> torch.Tensor:
        """scale * B @ A as float32 [N, K]."""
        return (self.lora_B[name].weight.float() @ self.lora_A[name].weight.float()) * float(self.scaling[name])

    def _merged_bias(self, merged: list[str]) -> torch.Tensor | None:
        with_bias = [name for name in merged if self.lora_B[name].bias is not None]
        if not with_bias:
            return None
        original = self._original_tensors["bias"]  # type: ignore[index]
        if original is None:
            raise RuntimeError("Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias.")
        bias = original.float()
        for name in with_bias:
            bias = bias + self.lora_B[name].bias.float() * float(self.scaling[name])
        return bias.to(original.dtype)

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """scale * B @ A in the adapter's dtype, as PEFT's own layer returns it (for tools that ask)."""
        return self._delta(adapter).to(self.lora_B[adapter].weight.dtype)

    def __repr__(self) -> str:
        return "lora." + nn.Module.__repr__(self)


class Int8LoraLinear(_QuantizedLoraLinear):
    """LoRA over an `Int8Linear`; fusing re-quantizes to int8 per channel."""

    def _requantize(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return requantize_int8(weight)


class Fp8LoraLinear(_QuantizedLoraLinear):
    """LoRA over an `Fp8Linear` (for comparisons); fusing re-quantizes to float8 per channel."""

    def _requantize(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return requantize_fp8(weight)


class _ScaleMirror(dict):
    """A layer's `scaling`: PEFT writes each adapter's scale here (update_layer, set_scale,
    scale_layer, hotswap's `_update_scaling`); every write is mirrored into the layer's 0-d
    tensor of that adapter, which is what `forward` reads (a tensor, so no recompile).

    Values stay Python floats, as PEFT expects them; a tensor written here (PEFT's
    compiled-hotswap preparation) is stored as its float, so later updates come back here.
    """

    def __init__(self, tensors: BufferDict, initial: dict[str, float]) -> None:
        super().__init__()
        self.tensors = tensors
        for name, value in initial.items():
            self[name] = value

    def __setitem__(self, name: str, value: float | torch.Tensor) -> None:
        scale = float(value)
        super().__setitem__(name, scale)
        if name in self.tensors:  # looked up now: `.to(device)` replaces the buffer objects
            self.tensors[name].fill_(scale)


# Base layer type -> its LoRA layer type, as PEFT's `_register_custom_module` takes it.
CUSTOM_LORA_LAYERS: dict[type[nn.Module], type[nn.Module]] = {Int8Linear: Int8LoraLinear, Fp8Linear: Fp8LoraLinear}
