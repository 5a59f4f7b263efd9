"""`bench --check`: every INT8 backend against the float64 `reference` on the model's own linear shapes.

The CPU tests prove each backend exact on small shapes; a GPU may lack pytest and its
kernels differ from the CPU's (Triton tiles, `_int_mm` padding, the 2**24 limit of the
float32 emulation at K = 12288). So the same comparison runs here on the device, on
every distinct linear shape of the model (fused q/k/v included) at M = 1, 16, 17
(`_int_mm`'s padding edge) and 4608 (a 1024x1024 step), in BF16 and FP16, with static
(calibrated, 0-d) and dynamic (per-row, computed at run time) activation scales.

Tolerance, as in the CPU tests (tests/int8/test_triton_w8a8.py): the backend's output and
the reference differ by float32 rounding before one cast to the output dtype, so every
element must satisfy |y - ref| <= atol + rtol * |ref| with rtol one step of the output
dtype (2**-7 BF16, 2**-10 FP16) and atol 1e-3 for outputs near zero. The reference is
`kernels.reference_linear` in float64, not rounded to the output dtype, computed in
column blocks so its float64 copy of a [36864, 4096] weight never exists at once.
Off CUDA the Triton backends run the op's float32 emulation (the kernel itself is tested
in Triton's CPU interpreter by the test suite), as `backends` does everywhere off CUDA.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..int8 import backends, kernels
from ..int8.linear import Int8Linear
from .budget import Budget
from .microbench import LinearShape, klein_linear_shapes
from .random_weights import fill_int8_linear_, random_activation_amax

CHECK_BACKENDS = ("int_mm", "triton", "triton_prequant", "auto")
CHECK_TOKENS = (1, 16, 17, 4608)
# Full-size klein shapes on a CPU: M = 4608 would take minutes per shape in float64 there.
CPU_KLEIN_CHECK_TOKENS = (1, 16, 17)
CHECK_DTYPES = ("bfloat16", "float16")
CHECK_ACTIVATIONS = ("static", "dynamic")
ABSOLUTE_TOLERANCE = 1e-3
SHAPE_KIND = "check shape"  # a Budget kind
_REFERENCE_COLUMNS = 4096  # output columns per float64 reference block


def relative_tolerance(dtype: torch.dtype) -> float:
    """One step of `dtype` at 1.0 (its machine epsilon): 2**-7 for BF16, 2**-10 for FP16."""
    return torch.finfo(dtype).eps


@dataclass(frozen=True)
class CheckCase:
    """One backend on one shape, M and dtype, against the reference."""

    in_features: int
    out_features: int
    layers: tuple[str, ...]
    tokens: int
    dtype: str
    activations: str  # static or dynamic
    backend: str
    ran: str  # the backend that computed it ('auto' resolved; 'emulation' for Triton off CUDA)
    max_abs_error: float
    relative_error: float  # ||y - ref|| / ||ref||, Frobenius
    worst_tolerance_ratio: float  # max |y - ref| / (atol + rtol |ref|): pass when <= 1
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "layers": list(self.layers)}


@dataclass
class CheckResult:
    device_name: str
    tokens: tuple[int, ...]
    dtypes: tuple[str, ...]
    backends: tuple[str, ...]
    activations: tuple[str, ...] = CHECK_ACTIVATIONS
    cases: list[CheckCase] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every case that ran passed (skipped shapes are listed, not failed)."""
        return all(case.passed for case in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_name": self.device_name,
            "tokens": list(self.tokens),
            "dtypes": list(self.dtypes),
            "backends": list(self.backends),
            "activations": list(self.activations),
            "tolerance": f"|y - ref| <= {ABSOLUTE_TOLERANCE} + rtol |ref| per element, rtol = one step of the output dtype (bfloat16 2**-7, float16 2**-10)",
            "passed": self.passed,
            "failed": sum(not case.passed for case in self.cases),
            "cases": [case.to_dict() for case in self.cases],
            "skipped": list(self.skipped),
        }


def run_check(
    configs: dict[str, dict[str, Any]],
    device: torch.device | str,
    tokens: tuple[int, ...] = CHECK_TOKENS,
    dtypes: tuple[str, ...] = CHECK_DTYPES,
    backends: tuple[str, ...] = CHECK_BACKENDS,
    activations: tuple[str, ...] = CHECK_ACTIVATIONS,
    seed: int = 0,
    budget: Budget | None = None,
    on_update: Callable[[CheckResult], None] = lambda result: None,
    device_name: str = "",
) -> CheckResult:
    """Compare `backends` with the reference on every distinct linear shape of `configs`, unfused and
    with q/k/v fused, at each M in `tokens` and each dtype; `on_update` after every shape."""
    device = torch.device(device)
    budget = budget or Budget()
    result = CheckResult(device_name, tuple(tokens), tuple(dtypes), tuple(backends), tuple(activations))
    generator = torch.Generator(device=device).manual_seed(seed)
    for shape in klein_linear_shapes(configs, fuse_qkv_modes=(False, True)):
        reason = budget.skip_reason(SHAPE_KIND)
        if reason is not None:
            result.skipped.append({"what": f"{shape.in_features}x{shape.out_features}", "why": reason})
        else:
            with budget.timed(SHAPE_KIND):
                result.cases.extend(_check_shape(shape, device, generator, result))
        on_update(result)
    return result


def _check_shape(shape: LinearShape, device: torch.device, generator: torch.Generator, plan: CheckResult) -> list[CheckCase]:
    """One random weight, quantized once, in a static and a dynamic layer; every M, dtype and backend."""
    weight = torch.randn(shape.out_features, shape.in_features, device=device, generator=generator) / math.sqrt(shape.in_features)
    layers = {mode: Int8Linear(shape.in_features, shape.out_features, device=device, activations=mode) for mode in plan.activations}
    amax = random_activation_amax(shape.in_features, device, generator)
    for layer in layers.values():
        fill_int8_linear_(layer, weight, amax)
    del weight
    cases = []
    for (mode, layer), dtype_name, m in itertools.product(layers.items(), plan.dtypes, plan.tokens):
        dtype = getattr(torch, dtype_name)
        x = torch.randn(m, shape.in_features, device=device, generator=generator).to(dtype)
        expected = reference_output(layer, x)
        for backend in plan.backends:
            layer.backend = backend
            with torch.no_grad():
                got = layer(x)
            cases.append(_case(shape, m, dtype, mode, backend, _ran(backend, device, shape), got, expected))
    return cases


def reference_output(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """`kernels.reference_linear` in float64 (x upcast exactly), [M, N], in column blocks; a dynamic
    layer's per-row scale is the one it computes itself (`kernels.row_scale`)."""
    x64 = x.double()
    input_scale = layer.input_scale if layer.input_scale is not None else kernels.row_scale(x)
    blocks = [
        kernels.reference_linear(x64, layer.weight[start : start + _REFERENCE_COLUMNS], layer.weight_scale[start : start + _REFERENCE_COLUMNS], input_scale, None)
        for start in range(0, layer.out_features, _REFERENCE_COLUMNS)
    ]
    return torch.cat(blocks, dim=1)


def _ran(backend: str, device: torch.device, shape: LinearShape) -> str:
    name = backends.pick_backend(device, shape.in_features, shape.out_features) if backend == "auto" else backend
    return f"{name} (emulation)" if name.startswith("triton") and device.type != "cuda" else name


def _case(shape: LinearShape, m: int, dtype: torch.dtype, activations: str, backend: str, ran: str, got: torch.Tensor, expected: torch.Tensor) -> CheckCase:
    difference = (got.double() - expected).abs()
    allowed = ABSOLUTE_TOLERANCE + relative_tolerance(dtype) * expected.abs()
    ratio = float((difference / allowed).max())
    return CheckCase(
        in_features=shape.in_features,
        out_features=shape.out_features,
        layers=shape.layers,
        tokens=m,
        dtype=str(dtype).removeprefix("torch."),
        activations=activations,
        backend=backend,
        ran=ran,
        max_abs_error=float(difference.max()),
        relative_error=float(difference.norm() / expected.norm().clamp_min(1e-30)),
        worst_tolerance_ratio=ratio,
        passed=got.dtype == dtype and got.shape == expected.shape and bool(torch.isfinite(got).all()) and ratio <= 1.0,
    )
