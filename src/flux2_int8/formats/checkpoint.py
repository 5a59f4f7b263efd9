"""Recognising a transformer checkpoint from its headers, and the plan to load it.

Everything here reads headers (and a few bytes of marker tensors) only. The result,
a `Checkpoint`, names every tensor by its diffusers key with its source file, source
key and shape, so loading, `inspect` and config inference share one view of a file
whatever its layout. Its `load_items()` is the whole load plan: one item per stored
tensor, which knows the diffusers tensors it becomes and how (split, swap, scale shape),
so the loader only reads bytes and places what the items give back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, UnsupportedFormatError
from ..textfiles import file_problem
from .comfy import COMFY_MARKER, convrot_group_size
from .foreign import ROTATION_PARAM, layer_layouts, recognise
from .header import SafetensorsHeader, TensorInfo, read_header, read_json_file
from .keys import ModuleMapping, Transform, bfl_tensor_to_diffusers, is_row_tensor, map_bfl_module, split_param, strip_prefix
from .scales import SCALE_PARAMS, canonical_scale, check_scale_values

if TYPE_CHECKING:  # torch only for annotations: reading headers (`inspect`) never imports it
    import torch

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"

INT8, FP8, FLOAT = "int8", "fp8", "float"
_WEIGHT_KINDS = {"I8": INT8, "F8_E4M3": FP8}


@dataclass(frozen=True)
class SourceTensor:
    """Where one diffusers-named tensor comes from: file, key and header entry as stored."""

    file: Path
    key: str
    info: TensorInfo  # as stored: a fused q/k/v has the rows of all three
    part_shape: tuple[int, ...]  # as the model holds it: one third of a fused q/k/v's rows


class TensorKind(Enum):
    """How the loader treats a tensor's values."""

    QUANTIZED_WEIGHT = "quantized_weight"  # int8 / float8: kept exactly as stored
    SCALE = "scale"  # checked, then float32 in the layer's shape
    ROTATION = "rotation"  # a ConvRot layer's [G, G] Hadamard matrix: float32, checked when read
    FLOAT = "float"  # cast to the compute dtype


@dataclass(frozen=True)
class LoadItem:
    """One stored tensor and what it becomes: the diffusers tensors it is cut into, and how."""

    checkpoint_path: Path
    file: Path
    source_key: str
    param: str
    kind: TensorKind
    mapping: ModuleMapping | None  # BFL layout: the split/swap to the diffusers modules
    target_rows: dict[str, int]  # diffusers key -> output rows of its layer (for scale shapes)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.target_rows)

    def convert(self, stored: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored tensor -> diffusers-named tensors (scales checked and canonical)."""
        if self.kind is TensorKind.SCALE:
            check_scale_values(self.checkpoint_path, self.source_key, stored)
        parts = bfl_tensor_to_diffusers(self.mapping, self.param, stored) if self.mapping else {self.targets[0]: stored}
        if self.kind is TensorKind.SCALE:
            parts = {key: canonical_scale(self.param, part, self.target_rows[key]) for key, part in parts.items()}
        if len(parts) > 1:
            # Each layer owns its tensors: q, k and v as views of one fused tensor (or one
            # shared input_scale) would tie the layers together, and diffusers'
            # `save_pretrained` refuses tensors that share memory.
            parts = {key: part.clone() for key, part in parts.items()}
        return parts


@dataclass
class Checkpoint:
    """A recognised transformer checkpoint (one file or a diffusers folder)."""

    path: Path
    layout: str  # "bfl" or "diffusers"
    headers: list[SafetensorsHeader]
    tensors: dict[str, SourceTensor]  # diffusers key -> source
    config: dict | None = None  # from config.json, for diffusers folders
    linear_kinds: dict[str, str] = field(default_factory=dict)  # diffusers module -> int8/fp8/float
    rotations: dict[str, int] = field(default_factory=dict)  # diffusers module -> ConvRot group size G

    @property
    def format(self) -> str:
        kinds = set(self.linear_kinds.values())
        precision = INT8 if INT8 in kinds else FP8 if FP8 in kinds else "bf16"
        if self.layout == "diffusers" and precision == INT8 and _quant_method(self.config) == "modelopt":
            return "modelopt-int8"
        return f"{self.layout}-{precision}"

    @property
    def metadata(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for header in self.headers:
            merged.update(header.metadata)
        return merged

    @property
    def size_bytes(self) -> int:
        return sum(h.file_size for h in self.headers)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.tensors[key].part_shape

    def load_items(self) -> list[LoadItem]:
        """The load plan: one item per stored tensor, grouped by file, in the order of `tensors`."""
        targets: dict[tuple[Path, str], list[str]] = {}
        for key, source in self.tensors.items():
            targets.setdefault((source.file, source.key), []).append(key)
        items = [self._load_item(file, source_key, keys) for (file, source_key), keys in targets.items()]
        return sorted(items, key=lambda item: str(item.file))

    def _load_item(self, file: Path, source_key: str, keys: list[str]) -> LoadItem:
        module, param = split_param(keys[0])
        kind = TensorKind.SCALE if param in SCALE_PARAMS else TensorKind.ROTATION if param == ROTATION_PARAM else TensorKind.FLOAT
        if param == "weight" and self.linear_kinds.get(module) in (INT8, FP8):
            kind = TensorKind.QUANTIZED_WEIGHT
        rows = {key: self.shape(f"{split_param(key)[0]}.weight")[0] if kind is TensorKind.SCALE else 0 for key in keys}
        mapping = map_bfl_module(split_param(strip_prefix(source_key))[0]) if self.layout == "bfl" else None
        return LoadItem(self.path, file, source_key, param, kind, mapping, rows)


def _quant_method(config: dict | None) -> str | None:
    quantization = (config or {}).get("quantization_config") or {}
    return quantization.get("quant_method") if isinstance(quantization, dict) else None


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Recognise a checkpoint: a `.safetensors` file, or a diffusers (or ModelOpt) folder.

    Files that are not a transformer flux2-int8 runs (a LoRA, NVFP4, torchao, FLUX.1, ...)
    are refused with `UnsupportedFormatError` saying what they are (`foreign.recognise`).
    """
    return checkpoint_from_headers(*read_headers(path))


def read_headers(path: str | Path) -> tuple[Path, list[SafetensorsHeader], dict | None]:
    """The checkpoint's path (a folder resolved to its transformer), headers and config.json."""
    path = Path(path)
    if path.is_dir():
        return _open_folder(path)
    if not path.exists():
        raise CheckpointError(path, "no such file or folder")
    problem = file_problem(path)  # a FIFO, device or socket: named, never opened
    if problem is not None:
        raise CheckpointError(path, problem)
    if path.suffix != ".safetensors":
        raise UnsupportedFormatError(path, "only .safetensors checkpoints are read (pickled .bin/.pt/.ckpt files are never loaded)")
    return path, [read_header(path)], None


def _open_folder(folder: Path) -> tuple[Path, list[SafetensorsHeader], dict | None]:
    """A diffusers transformer folder, or a pipeline folder holding one in `transformer/`."""
    if not (folder / "config.json").is_file() and (folder / "transformer" / "config.json").is_file():
        folder = folder / "transformer"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(folder, "a checkpoint folder needs config.json (a diffusers transformer folder)")
    config = read_json_file(config_path)
    if not isinstance(config, dict):
        raise CheckpointError(config_path, "config.json must hold a JSON object")
    files = _weight_files(folder)
    return folder, [read_header(f) for f in files], config


def _weight_files(folder: Path) -> list[Path]:
    index = folder / f"{DIFFUSERS_WEIGHTS}.index.json"
    if index.is_file():
        document = read_json_file(index)
        weight_map = document.get("weight_map", {}) if isinstance(document, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(name, str) for name in weight_map.values()):
            raise CheckpointError(index, "'weight_map' must map tensor names to file names")
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / DIFFUSERS_WEIGHTS
    if single.is_file():
        return [single]
    others = sorted(folder.glob("*.safetensors"))
    if len(others) == 1:
        return others
    raise CheckpointError(folder, f"expected {DIFFUSERS_WEIGHTS} (or its .index.json) in the folder")


def checkpoint_from_headers(path: Path, headers: list[SafetensorsHeader], config: dict | None) -> Checkpoint:
    """The `Checkpoint` of headers read by `read_headers`; a foreign file raises `UnsupportedFormatError`."""
    foreign = recognise(headers, config)
    if foreign is not None and not foreign.runnable:
        raise UnsupportedFormatError(path, foreign.message())
    raw = {strip_prefix(key): (header.path, key, info) for header in headers for key, info in header.tensors.items()}
    layout = _layout(path, raw)
    tensors: dict[str, SourceTensor] = {}
    for key, (file, source_key, info) in raw.items():
        module, param = split_param(key)
        if param == COMFY_MARKER:
            continue
        if layout == "bfl":
            _add_bfl_tensor(path, tensors, file, source_key, info, module, param)
        else:
            tensors[f"{module}.{param}"] = SourceTensor(file, source_key, info, info.shape)
    checkpoint = Checkpoint(path=path, layout=layout, headers=headers, tensors=tensors, config=config)
    checkpoint.linear_kinds = _linear_kinds(tensors)
    checkpoint.rotations = _rotations(path, layout, headers, tensors)
    return checkpoint


def _rotations(path: Path, layout: str, headers: list[SafetensorsHeader], tensors: dict[str, SourceTensor]) -> dict[str, int]:
    """Each ConvRot layer's group size: from its marker (`convrot_groupsize`), else from a stored [G, G] `rotation`.

    Markers are keyed by the file's layer names (BFL or diffusers, with or without ComfyUI's
    prefix); a fused BFL q/k/v gives its group size to all three diffusers layers.
    """
    found: dict[str, int] = {}
    for layer, document in layer_layouts(headers).items():
        group = convrot_group_size(document)
        if group is None:
            continue
        name = strip_prefix(layer)
        mapping = map_bfl_module(name) if layout == "bfl" else None
        if layout == "bfl" and mapping is None:
            raise CheckpointError(path, "a ConvRot marker for a layer unknown to the BFL layout", tensor=f"{layer}.{COMFY_MARKER}")
        for module in mapping.diffusers_modules if mapping else (name,):
            found[module] = group
    for key, source in tensors.items():
        module, param = split_param(key)
        if param == ROTATION_PARAM and module not in found:
            found[module] = source.info.shape[0] if source.info.shape else 0
    return found


def _add_bfl_tensor(path: Path, tensors: dict[str, SourceTensor], file: Path, key: str, info: TensorInfo, module: str, param: str) -> None:
    mapping = map_bfl_module(module)
    if mapping is None:
        raise CheckpointError(path, "unknown tensor for a FLUX.2 transformer in BFL layout", tensor=key)
    shape = info.shape
    if mapping.transform is Transform.SPLIT_QKV and is_row_tensor(param, info.numel):
        shape = (shape[0] // 3, *shape[1:])
    for target in mapping.diffusers_modules:
        tensors[f"{target}.{param}"] = SourceTensor(file, key, info, shape)


def _layout(path: Path, raw: dict[str, tuple[Path, str, TensorInfo]]) -> str:
    keys = raw.keys()
    if any(k.startswith(("double_blocks.", "single_blocks.")) for k in keys):
        return "bfl"
    if any(k.startswith(("transformer_blocks.", "single_transformer_blocks.")) for k in keys):
        return "diffusers"
    raise UnsupportedFormatError(path, "no FLUX.2 transformer tensors found (expected double_blocks.* / single_blocks.* or diffusers' transformer_blocks.*)")


def _linear_kinds(tensors: dict[str, SourceTensor]) -> dict[str, str]:
    """Each linear's precision, told by its weight's dtype (never by a list of names)."""
    kinds = {}
    for key, source in tensors.items():
        module, param = split_param(key)
        if param == "weight" and len(source.info.shape) == 2:
            kinds[module] = _WEIGHT_KINDS.get(source.info.dtype, FLOAT)
    return kinds
