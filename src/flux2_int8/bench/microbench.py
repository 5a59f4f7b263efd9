"""One `Int8Linear` against one BF16 `nn.Linear`, over every distinct klein linear shape.

This isolates the matrix product from the rest of the model: if INT8 does not beat
BF16 here, it cannot beat it in the transformer. Each shape runs at M = image tokens
+ 512 text tokens (4608 at 1024x1024), eager and compiled (Inductor fuses the
activation quantization and the rescale around the INT8 GEMM), once per requested
`Int8Linear` backend beside one BF16 timing, and is reported as achieved TFLOPS (BF16)
/ TOPS (INT8) next to the device's dense peak, where known. With ConvRot group sizes in
`rotations` each shape also gets rows of the rotated layer (weights rotated, then
quantized; the input rotated by H_G before its static quantization), against the same
BF16 timing, so a row's INT8/BF16 ratio next to the plain row's says what rotating costs.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..int8.fusion import fuse_qkv_projections
from ..int8.linear import Int8Linear, set_int8_backend
from ..int8.rotation import rotate_weight
from ..loading.skeleton import build_empty_model
from ..quantization.recipe import Recipe
from ..tiny import TINY_TRANSFORMER_CONFIG
from ..variants import KLEIN_4B, KLEIN_9B, get_variant
from .budget import Budget
from ..nano import nano_folder
from .pipeline_bench import NANO, TINY, BenchSettings
from .random_weights import fill_int8_linear_, quantized_linear_names, random_activation_amax
from .timing import Stats, time_calls

SHAPE_KIND = "microbenchmark shape"  # a Budget kind
# Distinct input buffers cycled through, so repeated calls do not all hit in L2 (50 MB on H100).
_ROTATING_INPUTS = 3
_BLOCK_INDEX = re.compile(r"\.\d+\.")


@dataclass(frozen=True)
class DevicePeak:
    """Dense (no 2:4 sparsity) tensor-core peaks of one GPU model, from NVIDIA's datasheets."""

    name: str
    bf16_tflops: float  # BF16 inputs, FP32 accumulate
    int8_tops: float


# Matched in order against the lower-cased `torch.cuda.get_device_name()`; first match wins.
# GeForce BF16 figures are the FP32-accumulate rate (half the FP16-accumulate one).
DEVICE_PEAKS: tuple[tuple[str, DevicePeak], ...] = (
    (r"h100.*pcie", DevicePeak("H100 PCIe", 756.5, 1513.0)),
    (r"h100.*nvl", DevicePeak("H100 NVL", 835.5, 1670.5)),
    (r"h100", DevicePeak("H100 SXM", 989.4, 1978.9)),
    (r"h200", DevicePeak("H200", 989.4, 1978.9)),
    (r"a100", DevicePeak("A100", 312.0, 624.0)),
    (r"l40s", DevicePeak("L40S", 362.05, 733.0)),
    (r"\bl4\b", DevicePeak("L4", 121.0, 242.5)),
    (r"rtx 5090", DevicePeak("RTX 5090", 209.5, 838.0)),
    (r"rtx 4090", DevicePeak("RTX 4090", 165.2, 660.6)),
    (r"rtx 3090", DevicePeak("RTX 3090", 71.0, 284.0)),
)


def device_peak(device_name: str) -> DevicePeak | None:
    """The datasheet peaks for a device name, or None for a device not in the table (and CPUs)."""
    lowered = device_name.lower()
    return next((peak for pattern, peak in DEVICE_PEAKS if re.search(pattern, lowered)), None)


@dataclass(frozen=True)
class LinearShape:
    """One distinct (in_features K, out_features N) pair and the layers that have it."""

    in_features: int
    out_features: int
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinearTiming:
    """One shape at M tokens, eager or compiled: BF16 once, INT8 once per backend."""

    shape: LinearShape
    tokens: int
    compiled: bool
    bf16: Stats
    int8: dict[str, Stats]  # Int8Linear backend -> timing, in the order asked for
    rotation: int | None = None  # ConvRot group size G of the INT8 layer (None: plain INT8)

    @property
    def operations(self) -> int:
        """Multiply-adds count twice: 2 * M * N * K."""
        return 2 * self.tokens * self.shape.in_features * self.shape.out_features

    @property
    def bf16_tflops(self) -> float:
        return self.operations / self.bf16.median_s / 1e12

    def int8_tops(self, backend: str) -> float:
        return self.operations / self.int8[backend].median_s / 1e12

    def int8_speedup(self, backend: str) -> float:
        """INT8 TOPS / BF16 TFLOPS, the same as BF16 time / INT8 time."""
        return self.bf16.median_s / self.int8[backend].median_s

    def to_dict(self, peak: DevicePeak | None) -> dict[str, Any]:
        int8 = {
            backend: {
                "time": stats.to_dict(),
                "tops": self.int8_tops(backend),
                "speedup_vs_bf16": self.int8_speedup(backend),
                "fraction_of_peak": self.int8_tops(backend) / peak.int8_tops if peak else None,
            }
            for backend, stats in self.int8.items()
        }
        return {
            "in_features": self.shape.in_features,
            "out_features": self.shape.out_features,
            "layers": list(self.shape.layers),
            "tokens": self.tokens,
            "compiled": self.compiled,
            "rotation": rotation_label(self.rotation),
            "bf16": self.bf16.to_dict(),
            "bf16_tflops": self.bf16_tflops,
            "bf16_fraction_of_peak": self.bf16_tflops / peak.bf16_tflops if peak else None,
            "int8": int8,
        }


@dataclass
class MicrobenchResult:
    device_name: str
    peak: DevicePeak | None
    int8_backends: tuple[str, ...] = ("auto",)
    rotations: tuple[int | None, ...] = (None,)  # ConvRot group sizes timed (None: plain INT8)
    timings: list[LinearTiming] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"what": shape, "why": reason}

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_name": self.device_name,
            "peak": None if self.peak is None else vars(self.peak),
            "int8_backends": list(self.int8_backends),
            "rotations": [rotation_label(rotation) for rotation in self.rotations],
            "timings": [timing.to_dict(self.peak) for timing in self.timings],
            "skipped": list(self.skipped),
        }


def rotation_label(group_size: int | None) -> str:
    """How reports name a rotation: `off`, or `convrot:G`."""
    return "off" if group_size is None else f"convrot:{group_size}"


def klein_linear_shapes(configs: dict[str, dict[str, Any]], recipe: Recipe = Recipe(), fuse_qkv_modes: tuple[bool, ...] = (False,)) -> list[LinearShape]:
    """Distinct (K, N) of the linears `recipe` quantizes, over transformer configs keyed by a label.

    Built on meta (free); block indices are folded, so 'klein-9b transformer_blocks.*.ff.linear_in'
    stands for all 8 of them. With True in `fuse_qkv_modes` the shapes of the q/k/v-fused
    model join them (`attn.to_qkv`, [3 x inner, hidden]).
    """
    found: dict[tuple[int, int], list[str]] = {}
    for (label, config), fused in itertools.product(configs.items(), fuse_qkv_modes):
        model = build_empty_model(config)
        if fused:
            fuse_qkv_projections(model)
        for name in quantized_linear_names(model, recipe):
            layer = model.get_submodule(name)
            generic = f"{label} {_BLOCK_INDEX.sub('.*.', name)}"
            names = found.setdefault((layer.in_features, layer.out_features), [])
            if generic not in names:
                names.append(generic)
    return [LinearShape(k, n, tuple(names)) for (k, n), names in sorted(found.items())]


def run_microbench(
    shapes: list[LinearShape],
    tokens: int,
    device: torch.device | str,
    compile_modes: tuple[bool, ...] = (False, True),
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    int8_backends: tuple[str, ...] = ("auto",),
    budget: Budget | None = None,
    on_update: Callable[[MicrobenchResult], None] = lambda result: None,
    rotations: tuple[int | None, ...] = (None,),
) -> MicrobenchResult:
    """Time BF16 `nn.Linear`, then the same weights in `Int8Linear` under each of `int8_backends`,
    plain (None in `rotations`) and rotated by each ConvRot group size G there, on each shape
    at M = `tokens`. A shape whose K a G does not divide has no row for that G (the layer
    would stay plain, as quantize leaves it): it is listed in `skipped`. `on_update` gets the
    result after every shape; `budget` skips a shape when the time left is less than the
    slowest shape so far took."""
    device = torch.device(device)
    budget = budget or Budget()
    result = MicrobenchResult(device_name=_device_name(device), peak=None, int8_backends=tuple(int8_backends), rotations=tuple(rotations))
    result.peak = device_peak(result.device_name) if device.type == "cuda" else None
    generator = torch.Generator(device=device).manual_seed(seed)
    for shape in shapes:
        reason = budget.skip_reason(SHAPE_KIND)
        if reason is not None:
            result.skipped.append({"what": f"{shape.in_features}x{shape.out_features} at M={tokens}", "why": reason})
            on_update(result)
            continue
        with budget.timed(SHAPE_KIND):
            _time_shape(result, shape, tokens, device, generator, compile_modes, repeats, warmup)
        on_update(result)
    return result


def _time_shape(result: MicrobenchResult, shape: LinearShape, tokens: int, device: torch.device, generator: torch.Generator, compile_modes: tuple[bool, ...], repeats: int, warmup: int) -> None:
    """One shape in every compile mode: BF16, then INT8 per rotation and backend of `result`."""
    weight, bf16_layer = _bf16_layer(shape, device, generator)
    amax = random_activation_amax(shape.in_features, device, generator)
    rotations = [g for g in result.rotations if g is None or shape.in_features % g == 0]
    for group in result.rotations:
        if group not in rotations:
            result.skipped.append({"what": f"{shape.in_features}x{shape.out_features} {rotation_label(group)}", "why": f"{group} does not divide K = {shape.in_features} (the layer stays plain)"})
    int8_layers = {group: _int8_layer(weight, amax, group) for group in rotations}
    inputs = [torch.randn(tokens, shape.in_features, device=device, generator=generator, dtype=torch.bfloat16) for _ in range(_ROTATING_INPUTS)]
    for compiled in compile_modes:
        bf16 = _time_layer(bf16_layer, inputs, compiled, device, repeats, warmup)
        for group, int8_layer in int8_layers.items():
            int8 = {}
            for backend in result.int8_backends:
                set_int8_backend(int8_layer, backend)
                int8[backend] = _time_layer(int8_layer, inputs, compiled, device, repeats, warmup)
            result.timings.append(LinearTiming(shape, tokens, compiled, bf16, int8, group))
    del bf16_layer, int8_layers, inputs


def _bf16_layer(shape: LinearShape, device: torch.device, generator: torch.Generator) -> tuple[torch.Tensor, nn.Linear]:
    """Random float32 weights [N, K] and the BF16 linear holding them."""
    weight = torch.randn(shape.out_features, shape.in_features, device=device, generator=generator) / math.sqrt(shape.in_features)
    bf16_layer = nn.Linear(shape.in_features, shape.out_features, bias=False, device=device, dtype=torch.bfloat16).requires_grad_(False)
    bf16_layer.weight.copy_(weight)
    return weight, bf16_layer


def _int8_layer(weight: torch.Tensor, activation_amax: float, rotation: int | None) -> Int8Linear:
    """The INT8 quantization of `weight` (rotated first for ConvRot); a rotation keeps a Gaussian input's range."""
    out_features, in_features = weight.shape
    layer = Int8Linear(in_features, out_features, device=weight.device, rotation_group_size=rotation)
    fill_int8_linear_(layer, weight if rotation is None else rotate_weight(weight, rotation), activation_amax)
    return layer


def _time_layer(layer: nn.Module, inputs: list[torch.Tensor], compiled: bool, device: torch.device, repeats: int, warmup: int) -> Stats:
    """Median over `repeats` calls cycling through `inputs`; a fresh Dynamo cache per compiled layer,
    since every shape recompiles the same `forward` and would hit Dynamo's recompile limit."""
    if compiled:
        torch._dynamo.reset()
        call = torch.compile(layer, fullgraph=True, dynamic=False)
    else:
        call = layer
    cycle = itertools.cycle(inputs)
    with torch.no_grad():
        return time_calls(lambda: call(next(cycle)), device, repeats, max(warmup, 1))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def run_variant_microbench(
    settings: BenchSettings,
    progress: Callable[[str], None] = lambda message: None,
    budget: Budget | None = None,
    on_update: Callable[[MicrobenchResult], None] = lambda result: None,
) -> MicrobenchResult:
    """The microbenchmark a `bench` run asks for: every distinct quantized linear shape of klein 4B
    and 9B (of `settings.variant` alone with `microbench_variant_only`; of the tiny model for
    'tiny'; fused q/k/v shapes too when fusion is asked for), at M = batch x (image tokens + 512
    text tokens), per INT8 backend and rotation of `settings`, eager and/or compiled (a single
    layer compiles the same whole or "regionally")."""
    progress(f"microbench: Int8Linear ({', '.join(settings.int8_backends)}) vs BF16 nn.Linear")
    tokens = settings.batch * (settings.image_tokens + settings.text_tokens)
    shapes = klein_linear_shapes(variant_shape_configs(settings), fuse_qkv_modes=settings.fuse_qkv_modes)
    modes = settings.microbench_compile_modes or settings.compile_modes
    compile_modes = tuple(dict.fromkeys(mode != "off" for mode in modes))
    return run_microbench(
        shapes, tokens, settings.device, compile_modes, repeats=max(settings.repeats, 10), warmup=max(settings.warmup, 3), int8_backends=settings.int8_backends, budget=budget, on_update=on_update,
        rotations=settings.microbench_rotations,
    )


def variant_shape_configs(settings: BenchSettings, variant_only: bool | None = None) -> dict[str, dict[str, Any]]:
    """Transformer configs whose linear shapes a run covers, keyed by label: the tiny model's for
    'tiny'; `settings.variant`'s alone when `variant_only` (default: `microbench_variant_only`);
    else klein 4B and 9B."""
    if settings.variant == TINY:
        return {TINY: dict(TINY_TRANSFORMER_CONFIG)}
    if settings.variant == NANO:
        import json

        return {NANO: json.loads((nano_folder() / "transformer" / "config.json").read_text(encoding="utf-8"))}
    only = settings.microbench_variant_only if variant_only is None else variant_only
    architectures = (get_variant(settings.variant).architecture,) if only else (KLEIN_4B, KLEIN_9B)
    return {arch.name: arch.transformer_config() for arch in architectures}
