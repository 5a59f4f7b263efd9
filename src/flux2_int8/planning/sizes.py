"""Bytes each stored tensor will take on the GPU, from headers: dtype conversions, the text-encoder cut, INT8 at load.

A loaded model's bytes are its state dict (parameters and persistent buffers). The loaders
cast float tensors to the compute dtype, keep int8/float8 weights as stored and hold
every scale as float32 in the layer's shape (`formats.scales.canonical_scale`: a
`weight_scale` is [N] whatever its stored shape, an `input_scale` one value); these
functions apply the same rules to header entries, so the plan equals the loaded model to
the byte (tests/planning hold them against loaded and meta-built models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..formats.checkpoint import FLOAT, Checkpoint
from ..formats.header import DTYPE_SIZES, SafetensorsHeader
from ..formats.keys import split_param
from .text_encoder import TextEncoderCut, is_linear_weight

SCALE_BYTES = 4  # float32
COMPUTE_DTYPES = {"bfloat16": 2, "float16": 2, "float32": 4}
FLOAT_STORED = {"BF16", "F16", "F32", "F64"}


@dataclass(frozen=True)
class TensorBytes:
    """Bytes on the GPU per model tensor name, and which repeated block (if any) each belongs to."""

    sizes: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def by_prefix(self, depth: int) -> dict[str, int]:
        """Bytes summed by the first `depth` name parts past a block index (e.g. `layers.3`)."""
        groups: dict[str, int] = {}
        for key, size in self.sizes.items():
            groups[block_of(key, depth)] = groups.get(block_of(key, depth), 0) + size
        return groups

    def blocks(self) -> dict[str, int]:
        """Bytes per repeated block (`transformer_blocks.3`, `layers.12`): what group offload moves at once."""
        return {name: size for name, size in self.by_prefix(0).items() if name[-1:].isdigit()}

    def largest_module(self) -> int:
        """Bytes of the largest single module (a linear with its scales): what sequential offload moves at once."""
        modules: dict[str, int] = {}
        for key, size in self.sizes.items():
            module = split_param(key)[0]
            modules[module] = modules.get(module, 0) + size
        return max(modules.values(), default=0)


def block_of(key: str, extra: int = 0) -> str:
    """`single_transformer_blocks.3.attn.to_out.weight` -> `single_transformer_blocks.3`; a key outside blocks -> `(other)`."""
    parts = key.split(".")
    for index, part in enumerate(parts[1:], start=1):
        if part.isdigit():
            return ".".join(parts[: index + 1 + extra])
    return "(other)"


def compute_bytes(dtype: str) -> int:
    return COMPUTE_DTYPES[dtype]


def cast_bytes(numel: int, stored_dtype: str, dtype: str) -> int:
    """A tensor the loader casts: float ones take the compute dtype, integer ones (a BatchNorm's counter) stay as stored."""
    return numel * (compute_bytes(dtype) if stored_dtype in FLOAT_STORED else DTYPE_SIZES[stored_dtype])


def transformer_bytes(checkpoint: Checkpoint, dtype: str) -> TensorBytes:
    """Every diffusers tensor of a transformer checkpoint as `load_transformer` holds it."""
    sizes: dict[str, int] = {}
    for key, source in checkpoint.tensors.items():
        module, param = split_param(key)
        numel = math.prod(source.part_shape)
        if param == "weight_scale":
            sizes[key] = checkpoint.shape(f"{module}.weight")[0] * SCALE_BYTES
        elif param in ("input_scale",):
            sizes[key] = SCALE_BYTES
        elif param == "pre_quant_scale":
            sizes[key] = numel * SCALE_BYTES
        elif param == "weight" and checkpoint.linear_kinds.get(module, FLOAT) != FLOAT:
            sizes[key] = numel * DTYPE_SIZES[source.info.dtype]
        else:
            sizes[key] = cast_bytes(numel, source.info.dtype, dtype)
    return TensorBytes(sizes)


def float_component_bytes(headers: list[SafetensorsHeader], dtype: str) -> TensorBytes:
    """A float component (the VAE, a BF16 transformer folder) cast to `dtype`."""
    return TensorBytes({key: cast_bytes(info.numel, info.dtype, dtype) for header in headers for key, info in header.tensors.items()})


def text_encoder_bytes(headers: list[SafetensorsHeader], cut: TextEncoderCut, dtype: str, quantize: bool) -> TensorBytes:
    """The cut encoder's tensors: int8 weights as stored (or made at load: `quantize`), scales float32 [N], the rest in `dtype`."""
    sizes: dict[str, int] = {}
    for header in headers:
        for stored_key, info in header.tensors.items():
            key = cut.model_key(stored_key)
            if key is None:
                continue
            module, param = split_param(key)
            if param == "weight_scale":
                sizes[key] = _rows(headers, cut, module) * SCALE_BYTES
            elif param == "input_scale":
                sizes[key] = SCALE_BYTES
            elif info.dtype == "I8":
                sizes[key] = info.numel
            elif quantize and is_linear_weight(key, info.shape):
                sizes[key] = info.numel
                sizes[f"{module}.weight_scale"] = info.shape[0] * SCALE_BYTES
            else:
                sizes[key] = cast_bytes(info.numel, info.dtype, dtype)
    return TensorBytes(sizes)


def stored_text_encoder_bytes(headers: list[SafetensorsHeader], dtype: str) -> int:
    """The whole stored encoder as a full load would hold it (float in `dtype`, int8 as stored, scales float32), head included."""
    full = TextEncoderCut(depth=10**9, full_depth=10**9)
    return text_encoder_bytes(headers, full, dtype, quantize=False).total + sum(
        info.numel * compute_bytes(dtype) for header in headers for key, info in header.tensors.items() if key.startswith("lm_head.")
    )


def _rows(headers: list[SafetensorsHeader], cut: TextEncoderCut, module: str) -> int:
    for header in headers:
        for stored_key, info in header.tensors.items():
            if cut.model_key(stored_key) == f"{module}.weight":
                return info.shape[0]
    return 1
