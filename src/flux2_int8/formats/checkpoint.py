"""Recognising a transformer checkpoint from its headers: layout, format, quantized layers.

Everything here reads headers (and a few bytes of marker tensors) only. The result,
a `Checkpoint`, names every tensor by its diffusers key with its source file, source
key and shape, so loading, `inspect` and config inference share one view of a file
whatever its layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, UnsupportedFormatError
from .header import SafetensorsHeader, TensorInfo, read_header
from .keys import ModuleMapping, Transform, is_row_tensor, map_bfl_module, split_param, strip_prefix

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
QUANTIZATION_METADATA = "_quantization_metadata"
COMFY_MARKER = "comfy_quant"
# Words that mark weights rotated by ConvRot/QuaRot/QuIP-style transforms: such weights
# are not plain INT8 and would give noise if read as if they were.
_ROTATION_WORDS = ("convrot", "quarot", "hadamard", "rotation", "rotated", "quip")

INT8, FP8, FLOAT = "int8", "fp8", "float"
_WEIGHT_KINDS = {"I8": INT8, "F8_E4M3": FP8}


@dataclass(frozen=True)
class SourceTensor:
    """Where one diffusers-named tensor comes from, and how to cut it out of its source."""

    file: Path
    key: str
    info: TensorInfo
    mapping: ModuleMapping | None = None  # BFL layout only
    param: str = ""

    @property
    def part_shape(self) -> tuple[int, ...]:
        """The shape after splitting a fused q/k/v (row tensors lose two thirds of their rows)."""
        shape = self.info.shape
        if self.mapping is not None and self.mapping.transform is Transform.SPLIT_QKV and is_row_tensor(self.param, self.info.numel):
            return (shape[0] // 3, *shape[1:])
        return shape


@dataclass
class Checkpoint:
    """A recognised transformer checkpoint (one file or a diffusers folder)."""

    path: Path
    layout: str  # "bfl" or "diffusers"
    headers: list[SafetensorsHeader]
    tensors: dict[str, SourceTensor]  # diffusers key -> source
    config: dict | None = None  # from config.json, for diffusers folders
    linear_kinds: dict[str, str] = field(default_factory=dict)  # diffusers module -> int8/fp8/float

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


def _quant_method(config: dict | None) -> str | None:
    quantization = (config or {}).get("quantization_config") or {}
    return quantization.get("quant_method") if isinstance(quantization, dict) else None


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Recognise a checkpoint: a `.safetensors` file, or a diffusers (or ModelOpt) folder."""
    path = Path(path)
    if path.is_dir():
        return _open_folder(path)
    if not path.exists():
        raise CheckpointError(path, "no such file or folder")
    if path.suffix != ".safetensors":
        raise UnsupportedFormatError(path, "only .safetensors checkpoints are read (pickled .bin/.pt/.ckpt files are never loaded)")
    header = read_header(path)
    return _build(path, [header], config=None)


def _open_folder(folder: Path) -> Checkpoint:
    """A diffusers transformer folder, or a pipeline folder holding one in `transformer/`."""
    if not (folder / "config.json").is_file() and (folder / "transformer" / "config.json").is_file():
        folder = folder / "transformer"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(folder, "a checkpoint folder needs config.json (a diffusers transformer folder)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(config_path, f"config.json is not valid JSON ({error})") from None
    files = _weight_files(folder)
    return _build(folder, [read_header(f) for f in files], config=config)


def _weight_files(folder: Path) -> list[Path]:
    index = folder / f"{DIFFUSERS_WEIGHTS}.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / DIFFUSERS_WEIGHTS
    if single.is_file():
        return [single]
    others = sorted(folder.glob("*.safetensors"))
    if len(others) == 1:
        return others
    raise CheckpointError(folder, f"expected {DIFFUSERS_WEIGHTS} (or its .index.json) in the folder")


def _build(path: Path, headers: list[SafetensorsHeader], config: dict | None) -> Checkpoint:
    _refuse_lora(path, headers)
    raw = {strip_prefix(key): (header.path, key, info) for header in headers for key, info in header.tensors.items()}
    _refuse_rotations(path, headers, raw)
    layout = _layout(path, raw)
    tensors: dict[str, SourceTensor] = {}
    for key, (file, source_key, info) in raw.items():
        module, param = split_param(key)
        if param == COMFY_MARKER:
            continue
        if layout == "bfl":
            _add_bfl_tensor(path, tensors, file, source_key, info, module, param)
        else:
            tensors[f"{module}.{param}"] = SourceTensor(file, source_key, info, param=param)
    checkpoint = Checkpoint(path=path, layout=layout, headers=headers, tensors=tensors, config=config)
    checkpoint.linear_kinds = _linear_kinds(tensors)
    return checkpoint


def _add_bfl_tensor(path: Path, tensors: dict[str, SourceTensor], file: Path, key: str, info: TensorInfo, module: str, param: str) -> None:
    mapping = map_bfl_module(module)
    if mapping is None:
        raise CheckpointError(path, "unknown tensor for a FLUX.2 transformer in BFL layout", tensor=key)
    for target in mapping.diffusers_modules:
        tensors[f"{target}.{param}"] = SourceTensor(file, key, info, mapping=mapping, param=param)


def _refuse_lora(path: Path, headers: list[SafetensorsHeader]) -> None:
    """A LoRA passed where a model goes: say what it is (its keys would otherwise read as unknown tensors)."""
    from ..lora.files import describe_lora_keys

    lora = describe_lora_keys({key: info.shape for header in headers for key, info in header.tensors.items()})
    if lora is not None:
        raise UnsupportedFormatError(path, f"this is {lora.describe()}, not a transformer checkpoint; load the base model and apply it with `flux2-int8 generate --lora {path}` or `pipe.load_lora_weights(...)`")


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


def _refuse_rotations(path: Path, headers: list[SafetensorsHeader], raw: dict[str, tuple[Path, str, TensorInfo]]) -> None:
    """Refuse ConvRot/QuaRot-style files: rotated weights read as plain INT8 give noise."""
    descriptions = [h.metadata.get(QUANTIZATION_METADATA, "") for h in headers]
    descriptions += [_read_marker(file, source_key) for key, (file, source_key, _) in raw.items() if key.endswith("." + COMFY_MARKER)]
    for text in descriptions:
        if _mentions_rotation(text):
            raise UnsupportedFormatError(path, f"this file holds rotated weights ({_excerpt(text)}); ConvRot/QuaRot checkpoints are not plain INT8 and cannot be loaded")
    for key in raw:
        module, param = split_param(key)
        if any(word in param.lower() for word in _ROTATION_WORDS):
            raise UnsupportedFormatError(path, "rotation tensors found; ConvRot/QuaRot checkpoints are not plain INT8 and cannot be loaded", tensor=key)


def _mentions_rotation(text: str) -> bool:
    try:
        document = json.loads(text) if text else {}
    except json.JSONDecodeError:
        document = text
    flat = json.dumps(document).lower()
    return any(word in flat for word in _ROTATION_WORDS)


def _excerpt(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _read_marker(file: Path, key: str) -> str:
    """A ComfyUI `comfy_quant` marker: a small uint8 tensor holding JSON."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        return bytes(handle.get_tensor(key).tolist()).decode("utf-8", errors="replace")
