"""`Int8Linear` and `Fp8Linear`: drop-in replacements for `nn.Linear` holding quantized weights.

Scales are float32 buffers that stay float32 when the model is moved with
`.to(torch.bfloat16)`: a bf16 scale would lose 16 bits of the calibration and shift
every output channel.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ChoiceError
from .backends import BACKENDS, onednn_serves, pack_weight_for_onednn, pick_backend
from .kernels import FP8_MAX
from .rotation import hadamard, hadamard_kind

Activations = Literal["static", "dynamic"]
ACTIVATION_MODES: tuple[Activations, ...] = ("static", "dynamic")


class _ScaledLinear(nn.Module):
    """Common storage: a low-precision weight [N, K] and float32 scales that resist dtype casts.

    The constructor decides which buffers exist (a static `input_scale`, ModelOpt's
    SmoothQuant `pre_quant_scale` [K]); loaders fill them, nobody adds or removes them later.
    """

    _float32_buffers: tuple[str, ...] = ("weight_scale", "input_scale", "pre_quant_scale")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight_dtype: torch.dtype,
        bias: bool,
        input_scale: bool,
        pre_quant_scale: bool,
        device: torch.device | str | None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=weight_dtype, device=device), requires_grad=False)
        self.register_buffer("weight_scale", torch.empty(out_features, dtype=torch.float32, device=device))
        self.register_buffer("input_scale", torch.empty((), dtype=torch.float32, device=device) if input_scale else None)
        self.register_buffer("pre_quant_scale", torch.empty(in_features, dtype=torch.float32, device=device) if pre_quant_scale else None)
        self.bias = nn.Parameter(torch.empty(out_features, device=device), requires_grad=False) if bias else None

    @property
    def has_input_scale(self) -> bool:
        """Whether the layer holds a calibrated static activation scale."""
        return self.input_scale is not None

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        originals = {name: getattr(self, name) for name in self._float32_buffers if getattr(self, name) is not None}
        super()._apply(fn, recurse)
        for name, original in originals.items():
            moved = getattr(self, name)
            if moved.dtype != torch.float32:
                setattr(self, name, original.to(device=moved.device))
        return self

    def _scaled_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pre_quant_scale is None else x * self.pre_quant_scale.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(_ScaledLinear):
    """W8A8 linear: int8 weight [N, K] with per-channel `weight_scale` [N].

    Activations are quantized with the calibrated static `input_scale` (0-d), or, built
    with `activations="dynamic"` (no `input_scale`), with a scale per row computed at run
    time (`kernels.row_scale`), as ComfyUI's INT8 files expect. Loaders build
    it (`flux2_int8.load_transformer`); build one yourself only to fill its buffers.

    Parameters
    ----------
    in_features, out_features : int
        K and N.
    bias : bool
        Whether a float bias [N] is held.
    device : str or torch.device, optional
        Where the (empty) buffers are made; "meta" for loaders.
    activations : {"static", "dynamic"}
        Whether the layer holds a static `input_scale` or computes one per token.
    pre_quant_scale : bool
        Whether it holds ModelOpt's SmoothQuant factor [K], multiplied into x first.
    rotation_group_size : int, optional
        ConvRot: the weight is stored rotated along K in groups of this size (a power of 2
        dividing K) and x is rotated the same way before it is quantized (`rotation`).
        The layer then holds `rotation`, float32 [G, G] (`int8.rotation.hadamard`), and a
        static `input_scale` is one of the rotated input.

    Attributes
    ----------
    backend : str
        "auto" (on CUDA `_int_mm` where its shape rules allow, or the fused Triton kernel
        with FLUX2_INT8_TRITON=1; on CPUs oneDNN's int8 GEMM on a packed weight with VNNI,
        exact float32 emulation without), or one of "int_mm", "onednn", "emulated",
        "reference", "triton", "triton_prequant" to force
        one (see `backends.pick_backend` and docs/kernels.md).

    Examples
    --------
    >>> layer = Int8Linear(3072, 3072, activations="dynamic")
    >>> layer.activations
    'dynamic'
    """

    _float32_buffers = (*_ScaledLinear._float32_buffers, "rotation")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        *,
        activations: Activations = "static",
        pre_quant_scale: bool = False,
        rotation_group_size: int | None = None,
    ) -> None:
        if activations not in ACTIVATION_MODES:
            raise ValueError(f"activations must be one of {', '.join(ACTIVATION_MODES)}, not {activations!r}")
        super().__init__(in_features, out_features, torch.int8, bias, input_scale=activations == "static", pre_quant_scale=pre_quant_scale, device=device)
        self.register_buffer("rotation", _rotation_buffer(in_features, rotation_group_size, device))
        self.backend = "auto"

    @property
    def rotation_group_size(self) -> int | None:
        """ConvRot's group size G (None for a plain INT8 layer)."""
        return None if self.rotation is None else self.rotation.shape[0]

    @property
    def activations(self) -> Activations:
        """"static" (a calibrated `input_scale`) or "dynamic" (a scale per row at run time)."""
        return "static" if self.input_scale is not None else "dynamic"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._scaled_input(x)  # SmoothQuant acts on the raw input; the backend rotates after it
        leading = x.shape[:-1]
        x2d = x.reshape(-1, self.in_features)
        backend = self._backend_name(x.device)
        weight = self._packed_weight() if backend == "onednn" and onednn_serves(x) else self.weight
        y = BACKENDS[backend](x2d, weight, self.weight_scale, self.input_scale, self.bias, self.rotation)
        return y.to(x.dtype).reshape(*leading, self.out_features)

    def _packed_weight(self) -> torch.Tensor:
        """The weight in oneDNN's packed layout, made on first use and again whenever the weight changes.

        Kept out of the state dict, copies and pickles (`__getstate__`): it is derived data,
        an opaque tensor, and the same bytes again (docs/kernels.md says what it costs).
        """
        weight = self.weight
        cached = self.__dict__.get("_onednn_weight")
        # The cache holds the Parameter it packed, so its memory cannot be reused by a new
        # weight at the same address; in-place writes through the Parameter bump `_version`.
        if cached is None or cached[0] is not weight or cached[1] != (weight.data_ptr(), weight._version):
            cached = (weight, (weight.data_ptr(), weight._version), pack_weight_for_onednn(weight.detach()))
            self.__dict__["_onednn_weight"] = cached
        return cached[2]

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        for derived in ("_onednn_weight", "_auto_backend"):
            state.pop(derived, None)
        return state

    def extra_repr(self) -> str:
        rotation = "" if self.rotation is None else f", convrot={self.rotation_group_size}"
        return super().extra_repr() + f", activations={self.activations}" + rotation

    def _backend_name(self, device: torch.device) -> str:
        """The backend for `device`; in eager runs `auto` is resolved once per (setting, device).

        `pick_backend` reads the environment and the device; asking it on every call was a
        measurable share of a small model's step. While `torch.compile` traces nothing is
        cached (the choice there may differ: `triton_prequant` instead of `triton`).
        """
        if self.backend != "auto":
            return self.backend
        if torch.compiler.is_compiling():
            return pick_backend(device, self.in_features, self.out_features)
        cached = self.__dict__.get("_auto_backend")
        if cached is None or cached[0] != device:
            cached = (device, pick_backend(device, self.in_features, self.out_features))
            self.__dict__["_auto_backend"] = cached
        return cached[1]


def _rotation_buffer(in_features: int, group_size: int | None, device: torch.device | str | None) -> torch.Tensor | None:
    """ConvRot's H_G for a new layer: filled on a real device, empty on meta (loaders fill it)."""
    if group_size is None:
        return None
    hadamard_kind(group_size)  # ValueError unless a power of 2
    if in_features % group_size:
        raise ValueError(f"a ConvRot group size must divide in_features: {group_size} does not divide {in_features}")
    if torch.device(device or "cpu").type == "meta":
        return torch.empty(group_size, group_size, dtype=torch.float32, device="meta")
    return hadamard(group_size, device).clone()


class Fp8Linear(_ScaledLinear):
    """BFL's FP8 layer (float8_e4m3fn weight, per-tensor scales), computed by dequantizing.

    It exists so FP8 files can be compared with INT8 ones; when an `input_scale` is
    present the activation is rounded through float8 as the FP8 model would see it.

    Parameters
    ----------
    in_features, out_features : int
        K and N.
    bias : bool
        Whether a float bias [N] is held.
    device : str or torch.device, optional
        Where the (empty) buffers are made.
    input_scale : bool
        Whether activations are rounded through float8 with a stored scale.
    pre_quant_scale : bool
        Whether a SmoothQuant factor [K] is held.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        *,
        input_scale: bool = True,
        pre_quant_scale: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, torch.float8_e4m3fn, bias, input_scale=input_scale, pre_quant_scale=pre_quant_scale, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output_dtype = x.dtype
        compute_dtype = torch.float32 if x.device.type == "cpu" else x.dtype
        x = self._scaled_input(x).to(compute_dtype)
        if self.input_scale is not None:
            scale = self.input_scale.to(compute_dtype)
            x = torch.clamp(x / scale, -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(compute_dtype) * scale
        weight = (self.weight.float() * self.weight_scale[:, None]).to(compute_dtype)
        bias = None if self.bias is None else self.bias.to(compute_dtype)
        return F.linear(x, weight, bias).to(output_dtype)


def set_int8_backend(model: nn.Module, backend: str) -> None:
    """Force every `Int8Linear` in `model` onto one backend ("auto" restores the default).

    Parameters
    ----------
    model : nn.Module
        Any module tree, e.g. a loaded transformer or `pipe.transformer`.
    backend : str
        "auto", "int_mm", "onednn", "emulated", "reference", "triton" or "triton_prequant".

    Raises
    ------
    ChoiceError
        For an unknown backend name (nothing is changed); a `Flux2Int8Error` and a `ValueError`.

    Examples
    --------
    >>> set_int8_backend(pipe.transformer, "triton_prequant")  # doctest: +SKIP
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ChoiceError(f"unknown INT8 backend '{backend}': expected auto or one of {', '.join(BACKENDS)}")
    for module in model.modules():
        if isinstance(module, Int8Linear):
            module.backend = backend
