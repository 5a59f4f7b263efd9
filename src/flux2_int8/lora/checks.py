"""The checks a LoRA / LoKr file passes before anything is changed: types, values, factor shapes.

diffusers and PEFT trust a file's tensors: A and B of different rank, a rank of 0, a
3-D factor, int8 factors or LoKr factors in the wrong order end in a traceback from
deep inside PEFT (after the first adapters were added), and NaN, inf or a 1e30 alpha
load fine and draw an all-black picture. So every file is checked here first and the
first fault is named with the file and the tensor:

- in the file as written (`check_file_values`): every tensor is floating point (F16,
  BF16, F32, F64), every value is finite, and every `alpha` (tensor, or diffusers'
  `lora_alpha` / `alpha_pattern` metadata) is finite and in (0, MAX_ALPHA] (an ai-toolkit
  LoKr's full-matrix placeholder alpha, which LyCORIS ignores, only needs to be finite);
- after diffusers' conversion (`check_factor_shapes`, `check_factor_magnitudes`): LoRA A
  [r, in] and B [out, r] are 2-D and agree on r >= 1; LoKr factors are 2-D and their `_a` /
  `_b` halves agree on r >= 1; no factor value exceeds MAX_FACTOR (alpha is baked into the
  factors by then);
- once the factors are known to fit the layers (`check_lokr_factorization`): LoKr factor
  shapes follow a factorization PEFT can rebuild.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..formats.header import SafetensorsHeader

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
# alpha is at most the rank in every trainer we know (kohya, ai-toolkit, diffusers, LyCORIS);
# ranks stay under a few thousand. 1e4 leaves room and refuses 1e30.
MAX_ALPHA = 1e4
# A factor value (alpha baked in) past this makes a weight update 1e4 times a weight's
# whole range: not a LoRA anyone trained. It also keeps float16 (max 65504) finite.
MAX_FACTOR = 1e4
_LOKR_FULL = (".lokr_w1", ".lokr_w2")


def check_file_values(path: Path, header: SafetensorsHeader) -> None:
    """Refuse non-float tensors (from the header), non-finite values and absurd alphas (reading each tensor once)."""
    for name, info in header.tensors.items():
        if info.dtype not in FLOAT_DTYPES:
            raise CheckpointError(path, f"is {info.dtype}; LoRA and LoKr factors and alphas must be floating point ({', '.join(FLOAT_DTYPES)})", tensor=name)
    _check_metadata_alphas(path, header.metadata)
    full_lokr = _full_lokr_modules(header.tensors)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        for name in header.tensors:
            tensor = handle.get_tensor(name)
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(path, f"holds {_non_finite(tensor)}; a LoRA must hold finite numbers (a diverged training run?)", tensor=name)
            if name.endswith(".alpha") and name[: -len(".alpha")] not in full_lokr:
                _check_alpha(path, tensor, name)


def _check_alpha(path: Path, tensor: torch.Tensor, name: str) -> None:
    if tensor.numel() != 1:
        raise CheckpointError(path, f"an alpha must be one number, this one has shape {list(tensor.shape)}", tensor=name)
    value = float(tensor.reshape(()))
    if not 0 < value <= MAX_ALPHA:
        raise CheckpointError(path, f"alpha {value:g} is outside (0, {MAX_ALPHA:g}] (alpha / rank scales the update; trainers write alpha <= rank)", tensor=name)


def _full_lokr_modules(names: Iterable[str]) -> set[str]:
    """Modules whose LoKr w1 and w2 are both full matrices: LyCORIS ignores their alpha (ai-toolkit writes 1e10)."""
    names = set(names)
    modules = {name[: -len(".lokr_w1")] for name in names if name.endswith(".lokr_w1")}
    return {module for module in modules if f"{module}.lokr_w2" in names}


def _check_metadata_alphas(path: Path, metadata: dict[str, str]) -> None:
    """diffusers/PEFT files keep `lora_alpha` (and per-module `alpha_pattern`) in JSON metadata, read at load time."""
    text = metadata.get("lora_adapter_metadata")
    if text is None:
        return
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return  # diffusers' own reader reports a broken metadata document
    if not isinstance(document, dict):
        return
    for key, value in document.items():
        values = value.items() if key.endswith("alpha_pattern") and isinstance(value, dict) else [(None, value)] if key.endswith("lora_alpha") else []
        for module, alpha in values:
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and 0 < alpha <= MAX_ALPHA):
                where = f"'{key}'" + (f" for '{module}'" if module else "")
                raise CheckpointError(path, f"metadata {where} is {alpha!r}; expected a finite alpha in (0, {MAX_ALPHA:g}]")


def _non_finite(tensor: torch.Tensor) -> str:
    nan = int(torch.isnan(tensor).sum())
    inf = int(torch.isinf(tensor).sum())
    return ", ".join(part for part in (f"{nan} NaN" if nan else "", f"{inf} infinite value(s)" if inf else "") if part)


def check_factor_shapes(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse factors PEFT would crash on, naming the tensor (diffusers' names, `transformer.<layer>.lora_A.weight`)."""
    for name, tensor in state.items():
        if ".lora_" in name or ".lokr_" in name:
            if tensor.dim() != 2:
                raise CheckpointError(path, f"is {tensor.dim()}-D {list(tensor.shape)}; a factor of a linear layer is a 2-D matrix", tensor=name)
            if 0 in tensor.shape:
                raise CheckpointError(path, f"has shape {list(tensor.shape)}: a rank of 0 (no update at all; a broken export?)", tensor=name)
    for name, a in state.items():
        if name.endswith(".lora_A.weight"):
            b_name = name.replace(".lora_A.weight", ".lora_B.weight")
            b = state.get(b_name)
            if b is None:
                raise CheckpointError(path, "has no matching lora_B", tensor=name)
            if a.shape[0] != b.shape[1]:
                raise CheckpointError(path, f"A is [{a.shape[0]}, {a.shape[1]}] and B [{b.shape[0]}, {b.shape[1]}]: their ranks ({a.shape[0]} and {b.shape[1]}) differ", tensor=name)
        elif name.endswith(".lora_B.weight") and name.replace(".lora_B.weight", ".lora_A.weight") not in state:
            raise CheckpointError(path, "has no matching lora_A", tensor=name)
    for module in sorted({name.rpartition(".lokr_")[0] for name in state if ".lokr_" in name}):
        _check_lokr_module(path, module, state)


def _check_lokr_module(path: Path, module: str, state: dict[str, torch.Tensor]) -> None:
    for which in ("w1", "w2"):
        full, a, b = (state.get(f"{module}.lokr_{which}{suffix}") for suffix in ("", "_a", "_b"))
        if full is None and (a is None or b is None):
            raise CheckpointError(path, f"LoKr layer '{module}' has no lokr_{which} (nor both lokr_{which}_a and lokr_{which}_b)")
        if full is None and a.shape[1] != b.shape[0]:  # type: ignore[union-attr]
            raise CheckpointError(path, f"lokr_{which}_a is {list(a.shape)} and lokr_{which}_b {list(b.shape)}: their ranks differ", tensor=f"{module}.lokr_{which}_a")  # type: ignore[union-attr]


def check_lokr_factorization(path: Path, state: dict[str, torch.Tensor]) -> None:
    """PEFT rebuilds each LoKr layer from `factorization(dim, decompose_factor)`; refuse factors no such factor reproduces.

    Swapped w1 / w2 (or factors of another split of the layer) give the right product
    shape but not PEFT's split, and end in a shape error inside PEFT otherwise.
    """
    from peft.tuners.lokr.layer import factorization

    shapes = {}
    for module in sorted({name.rpartition(".lokr_")[0] for name in state if ".lokr_" in name}):
        w1 = _factor_shape(state, module, "w1")
        w2 = _factor_shape(state, module, "w2")
        shapes[module] = ((w1[0], w2[0]), (w1[1], w2[1]))
    if not shapes:
        return
    candidates = sorted({outs[0] for outs, _ in shapes.values()}) + [-1]
    for candidate in candidates:
        if all(factorization(o1 * o2, candidate) == (o1, o2) and factorization(i1 * i2, candidate) == (i1, i2) for (o1, o2), (i1, i2) in shapes.values()):
            return

    def near_square(dims: tuple[tuple[int, int], tuple[int, int]]) -> bool:
        return all(factorization(first * second) == (first, second) for first, second in dims)

    module = next((name for name, dims in shapes.items() if not near_square(dims)), next(iter(shapes)))  # the odd one out
    (o1, o2), (i1, i2) = shapes[module]
    raise CheckpointError(
        path,
        f"LoKr layer '{module}': w1 is [{o1}, {i1}] and w2 [{o2}, {i2}], a split of the [{o1 * o2}, {i1 * i2}] update that LyCORIS' factorization does not make "
        f"(expected w1 [{factorization(o1 * o2)[0]}, {factorization(i1 * i2)[0]}]; are w1 and w2 swapped?)",
    )


def _factor_shape(state: dict[str, torch.Tensor], module: str, which: str) -> tuple[int, int]:
    full = state.get(f"{module}.lokr_{which}")
    if full is not None:
        return (full.shape[0], full.shape[1])
    return (state[f"{module}.lokr_{which}_a"].shape[0], state[f"{module}.lokr_{which}_b"].shape[1])


def check_factor_magnitudes(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse a converted factor (alpha baked in) that is not finite or exceeds MAX_FACTOR."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(path, f"is {tensor.dtype}; LoRA factors must be floating point", tensor=name)
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(path, f"holds {_non_finite(tensor)} once its alpha is applied", tensor=name)
        largest = float(tensor.abs().max()) if tensor.numel() else 0.0
        if largest > MAX_FACTOR:
            raise CheckpointError(path, f"holds values up to {largest:.3g} once its alpha is applied; at most {MAX_FACTOR:g} are taken (a LoRA's factors are of order 1; is alpha right?)", tensor=name)
