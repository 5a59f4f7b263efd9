"""Files that are not ours to run, named from their headers: what each is and what to do.

Users hand the loader whatever the FLUX ecosystem passes around: LoRA adapters, NVFP4
and MXFP8 files, block-wise INT8, ConvRot-rotated INT8, torchao exports, FLUX.1 and
FLUX.2 [dev] checkpoints. Each would otherwise fail deep in the load with a message
about the symptom (an unknown key, a scale of the wrong shape). `recognise` reads the
headers (and a few bytes of ComfyUI's marker tensors) and says what the file is, so
`inspect` and the loader's refusal name the file's kind and the way forward.

The rules follow how the tools that write these files name their tensors:
- LoRA: diffusers/PEFT `lora_A`/`lora_B`, kohya/ComfyUI `lora_down`/`lora_up`/`alpha`,
  ai-toolkit/BFL under `diffusion_model.`, LoKr `lokr_w1`/`lokr_w2` (the key families
  diffusers' `Flux2LoraLoaderMixin.lora_state_dict` converts).
- ComfyUI per-layer `comfy_quant` markers and the `_quantization_metadata` header entry
  (`format`: `nvfp4`, `mxfp8`, `int8_blockwise`, ..., `convrot`).
- NVFP4 without markers (ModelOpt): a uint8 weight (two FP4 values a byte) with a
  float8 block `weight_scale` and a float32 `weight_scale_2`.
- torchao's safetensors export: `tensor_names` metadata, `:qdata`-style tensor names.
- FLUX.1: per-block modulation (`img_mod.lin`, `norm1.linear`), `vector_in`, `time_text_embed`.
- FLUX.2 [dev]: FLUX.2 names at [dev]'s size (hidden 6144, 48 single blocks).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO

from ..variants import ARCHITECTURES
from .comfy import COMFY_MARKER, QUANTIZATION_METADATA, is_convrot_layout
from .header import SafetensorsHeader, loads_bounded

# Words that mark weights rotated by ConvRot/QuaRot/QuIP-style transforms: such weights
# are not plain INT8 and would give noise if read as if they were. ConvRot INT8 (a
# group-wise Hadamard, `comfy.is_convrot_layout`) is read; every other rotation is refused.
ROTATION_WORDS = ("convrot", "quarot", "hadamard", "rotation", "rotated", "quip")
# The per-layer tensor our ConvRot layers store their [G, G] Hadamard matrix in (`Int8Linear.rotation`).
ROTATION_PARAM = "rotation"
_MARKER_BYTES_LIMIT = 4096  # a marker is a short JSON object; anything longer is not one

_QUANTIZE_ADVICE = "quantize the BF16 model with `flux2-int8 quantize`, or use a published INT8 W8A8 klein file"
# ComfyUI `format` values flux2-int8 cannot run, and what each is.
_COMFY_FORMATS = {
    "nvfp4": ("nvfp4", "NVFP4 (4-bit float weights in blocks of 16, for Blackwell GPUs)"),
    "mxfp8": ("mxfp8", "MXFP8 (8-bit float weights with a shared exponent per block of 32)"),
    "int8_blockwise": ("int8-blockwise", "block-wise INT8 (one weight scale per weight tile)"),
    "float8_e4m3fn_blockwise": ("fp8-blockwise", "block-wise FP8 (one weight scale per weight tile)"),
    "convrot_w4a4": ("convrot", "ConvRot W4A4 (rotated 4-bit weights)"),
    "asym_w4a8_int8": ("w4a8", "asymmetric W4A8 (4-bit weights with group scales)"),
}
_ADVICE = {
    "nvfp4": "NVFP4 needs a Blackwell GPU: run it in ComfyUI or diffusers (its bfl / modelopt quantizers); flux2-int8 runs INT8: " + _QUANTIZE_ADVICE,
    "mxfp8": "run it in ComfyUI; flux2-int8 runs INT8: " + _QUANTIZE_ADVICE,
    "int8-blockwise": "run it in ComfyUI (int8_blockwise); flux2-int8 reads per-channel or per-tensor INT8: " + _QUANTIZE_ADVICE,
    "fp8-blockwise": "run it in ComfyUI; flux2-int8 reads per-tensor FP8 and INT8: " + _QUANTIZE_ADVICE,
    "convrot": "flux2-int8 runs ConvRot INT8 (group-wise Hadamard, `convrot: true` markers), not learned or random rotations (QuaRot/QuIP style) nor other rotated layouts; run it in the tool that wrote it, or " + _QUANTIZE_ADVICE,
    "w4a8": "run it in ComfyUI; flux2-int8 runs INT8 W8A8: " + _QUANTIZE_ADVICE,
    "torchao": "load it with diffusers and torchao (`Flux2Transformer2DModel.from_pretrained` with a `TorchAoConfig`), which rebuild its tensor subclasses, or " + _QUANTIZE_ADVICE,
    "flux1": "flux2-int8 runs FLUX.2 [klein]; use a FLUX.2 [klein] checkpoint (FLUX.1 has another architecture and text encoders)",
    "flux2-dev": "load_transformer reads it as a FLUX.2 transformer, but flux2-int8's pipelines, presets and calibration are for klein (FLUX.2 [dev] pairs with a Mistral text encoder in diffusers' Flux2Pipeline)",
    "lora": "an adapter is applied on top of a model: load a FLUX.2 [klein] transformer (BF16 or INT8) and add the adapter to the pipeline (diffusers: `pipe.load_lora_weights(path)`)",
}


@dataclass(frozen=True)
class LoraInfo:
    """What a LoRA file adapts: its key family, rank, how many layers, which klein size."""

    format: str
    rank: int | None  # the most common rank (None for LoKr, which has no single rank)
    layers: int
    fits: str  # "klein-4b", "klein-9b", or a sentence saying no klein size fits


@dataclass(frozen=True)
class ForeignFile:
    """A file that is not a FLUX.2 [klein] transformer flux2-int8 can run as it stands."""

    kind: str  # lora, nvfp4, mxfp8, int8-blockwise, fp8-blockwise, convrot, w4a8, torchao, flux1, flux2-dev
    summary: str  # one line: what the file is
    advice: str  # one line: what to do with it
    runnable: bool = False  # flux2-dev: the transformer loads, only the pipelines are klein's
    lora: LoraInfo | None = None

    def message(self) -> str:
        """The loader's refusal: what it is, then what to do."""
        return f"{self.summary}; {self.advice}"


def recognise(headers: list[SafetensorsHeader], config: dict | None = None) -> ForeignFile | None:
    """Name a foreign file from its headers (and its ComfyUI markers), or None for one of ours."""
    keys = [key for header in headers for key in header.tensors]
    for rule in (_lora, _torchao):
        found = rule(headers, keys, config)
        if found:
            return found
    return _quantized(headers, keys, config) or _family(headers, keys)


# ---- LoRA ------------------------------------------------------------------------------

_LORA_DOWN = re.compile(r"\.(lora_A|lora_down)(\.[^.]+)?\.weight$")
_LORA_SUFFIX = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up|alpha|dora_scale|lokr_\w+)(\.[^.]+)?(\.weight)?$")
_DOUBLE = re.compile(r"(?:double_blocks|(?<!single_)transformer_blocks)[._](\d+)[._]")
_SINGLE = re.compile(r"(?:single_blocks|single_transformer_blocks)[._](\d+)[._]")


def _lora(headers: list[SafetensorsHeader], keys: list[str], config: dict | None) -> ForeignFile | None:
    adapter_keys = [key for key in keys if _LORA_SUFFIX.search(key)]
    if not adapter_keys:
        return None
    shapes = {key: info.shape for header in headers for key, info in header.tensors.items()}
    lokr = any(".lokr_" in key for key in adapter_keys)
    rank = None if lokr else _most_common([shapes[k][0] for k in adapter_keys if _LORA_DOWN.search(k) and shapes[k]])
    info = LoraInfo(
        format=_lora_format(adapter_keys, lokr),
        rank=rank,
        layers=len({_LORA_SUFFIX.sub("", key) for key in adapter_keys}),
        fits=_lora_fit(adapter_keys, shapes, lokr),
    )
    rank_text = f"rank {info.rank}, " if info.rank is not None else ""
    summary = f"a LoRA adapter ({info.format}; {rank_text}{info.layers} layers; {info.fits}), not a transformer checkpoint"
    return ForeignFile("lora", summary, _ADVICE["lora"], lora=info)


def _lora_format(keys: list[str], lokr: bool) -> str:
    if lokr:
        return "LyCORIS LoKr" if any(k.startswith("lycoris_") for k in keys) else "LoKr (lokr_w1/lokr_w2)"
    if any(".lora_down" in k for k in keys):
        return "kohya/ComfyUI lora_down/lora_up/alpha"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "BFL/ai-toolkit lora_A/lora_B under diffusion_model."
    return "diffusers/PEFT lora_A/lora_B"


def _lora_fit(keys: list[str], shapes: dict[str, tuple[int, ...]], lokr: bool) -> str:
    """The klein size whose hidden width and block counts the adapter's shapes fit."""
    widths = [_lokr_in_features(key, shapes) for key in keys if key.endswith("lokr_w2") or key.endswith("lokr_w2_b")] if lokr else [
        shapes[key][1] for key in keys if _LORA_DOWN.search(key) and len(shapes[key]) == 2
    ]
    hidden = _most_common([w for w in widths if w])
    doubles = _max_index(_DOUBLE, keys)
    singles = _max_index(_SINGLE, keys)
    for architecture in ARCHITECTURES:
        if hidden == architecture.hidden_size and doubles < architecture.num_layers and singles < architecture.num_single_layers:
            return f"fits {architecture.name}"
    return f"fits no klein size (hidden width {hidden}, {doubles + 1} double / {singles + 1} single blocks)"


def _lokr_in_features(key: str, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """A LoKr layer's input width: columns of w1 (or w1_b) times columns of w2 (or w2_b)."""
    stem = key.rsplit(".", 1)[0]
    w1 = shapes.get(f"{stem}.lokr_w1") or shapes.get(f"{stem}.lokr_w1_b")
    w2 = shapes.get(f"{stem}.lokr_w2") or shapes.get(f"{stem}.lokr_w2_b")
    if not w1 or not w2 or len(w1) != 2 or len(w2) != 2:
        return None
    return w1[1] * w2[1]


def _max_index(pattern: re.Pattern[str], keys: list[str]) -> int:
    return max((int(m.group(1)) for key in keys if (m := pattern.search(key))), default=-1)


def _most_common(values: list[int]) -> int | None:
    return Counter(values).most_common(1)[0][0] if values else None


# ---- torchao ---------------------------------------------------------------------------


def _torchao(headers: list[SafetensorsHeader], keys: list[str], config: dict | None) -> ForeignFile | None:
    metadata = {k: v for header in headers for k, v in header.metadata.items()}
    flattened = any(":" in key or re.search(r"\._weight_(qdata|scale)$", key) for key in keys)
    described = "tensor_names" in metadata or any('"_type"' in value for value in metadata.values())
    if flattened or described or _quant_method(config) == "torchao":
        return ForeignFile("torchao", "a torchao export (tensor subclasses flattened into safetensors)", _ADVICE["torchao"])
    return None


def _quant_method(config: dict | None) -> str | None:
    quantization = (config or {}).get("quantization_config") or {}
    return quantization.get("quant_method") if isinstance(quantization, dict) else None


# ---- quantized layouts: ComfyUI markers, NVFP4, block-wise INT8, rotations -----------------


def _quantized(headers: list[SafetensorsHeader], keys: list[str], config: dict | None) -> ForeignFile | None:
    layouts = layer_layouts(headers)
    for layout in layouts.values():
        if mentions_rotation(layout) and not is_convrot_layout(layout):
            return _named("convrot", f"a QuaRot/QuIP-style or other rotated file flux2-int8 cannot run: rotated weights ({_excerpt(json.dumps(layout))})")
    formats = Counter(str(layout.get("format")) for layout in layouts.values())
    for name, _ in formats.most_common():
        if name in _COMFY_FORMATS:
            kind, what = _COMFY_FORMATS[name]
            return _named(kind, f"a ComfyUI {what} file ({formats[name]} layers)")
    shapes = {key: info.shape for header in headers for key, info in header.tensors.items()}
    for key in keys:
        if any(word in key.rsplit(".", 1)[-1].lower() for word in ROTATION_WORDS) and not _convrot_matrix(key, shapes):
            return _named("convrot", f"a QuaRot/QuIP-style rotated file flux2-int8 cannot run: rotation tensors ('{key}')")
    return _nvfp4(headers, config) or _blockwise(headers)


def _convrot_matrix(key: str, shapes: dict[str, tuple[int, ...]]) -> bool:
    """Our ConvRot layers' stored H_G: `<layer>.rotation`, square, beside the layer's weight.

    Its values are checked when it is read (a learned matrix is refused then, by name).
    """
    module, _, param = key.rpartition(".")
    shape = shapes[key]
    return param == ROTATION_PARAM and len(shape) == 2 and shape[0] == shape[1] and f"{module}.weight" in shapes


def _named(kind: str, summary: str) -> ForeignFile:
    return ForeignFile(kind, summary, _ADVICE[kind])


def _nvfp4(headers: list[SafetensorsHeader], config: dict | None) -> ForeignFile | None:
    algo = str(((config or {}).get("quantization_config") or {}).get("quant_algo", "")).upper()
    for header in headers:
        for key, info in header.tensors.items():
            module = key.rsplit(".", 1)[0]
            scale = header.tensors.get(f"{module}.weight_scale")
            packed = key.endswith(".weight") and info.dtype == "U8" and len(info.shape) == 2
            if packed and (f"{module}.weight_scale_2" in header.tensors or (scale is not None and scale.dtype == "F8_E4M3")):
                where = "diffusers/ModelOpt" if ".transformer_blocks." in f".{key}" else "BFL/ComfyUI"
                return _named("nvfp4", f"a {where} NVFP4 file (uint8 weights holding two FP4 values, e.g. '{key}' {list(info.shape)})")
    if "NVFP4" in algo or "FP4" in algo:
        return _named("nvfp4", f"a diffusers/ModelOpt NVFP4 folder (quant_algo {algo})")
    return None


def _blockwise(headers: list[SafetensorsHeader]) -> ForeignFile | None:
    for header in headers:
        for key, info in header.tensors.items():
            module, _, param = key.rpartition(".")
            weight = header.tensors.get(f"{module}.weight")
            if param not in ("weight_scale", "scale_weight") or weight is None or weight.dtype != "I8" or len(info.shape) != 2:
                continue
            rows, columns = weight.shape if len(weight.shape) == 2 else (0, 0)
            block = -(-rows // max(info.shape[0], 1))
            if info.shape[1] > 1 and block > 1 and info.shape[1] == -(-columns // block):
                return _named("int8-blockwise", f"a block-wise INT8 file ('{key}' is {list(info.shape)} for weight {list(weight.shape)}: tiles of {block})")
    return None


def layer_layouts(headers: list[SafetensorsHeader]) -> dict[str, dict]:
    """Every layer's ComfyUI quantization layout, from the header entry and the marker tensors.

    Keys are layer names as the file spells them; a marker tensor overrides the header
    entry of its layer. Malformed JSON counts as an empty layout.
    """
    layouts: dict[str, dict] = {}
    for header in headers:
        document = _json(header.metadata.get(QUANTIZATION_METADATA, ""))
        layers = document.get("layers") if isinstance(document, dict) else None
        if isinstance(layers, dict):
            layouts.update({str(k): v if isinstance(v, dict) else {} for k, v in layers.items()})
        elif document:
            layouts[QUANTIZATION_METADATA] = document if isinstance(document, dict) else {"value": document}
        markers = {key: info for key, info in header.tensors.items() if key.endswith("." + COMFY_MARKER)}
        if not markers:
            continue
        with header.path.open("rb") as handle:
            for key, info in markers.items():
                marker = _json(read_marker(handle, info.offset, info.numel))
                layouts[key[: -len(COMFY_MARKER) - 1]] = marker if isinstance(marker, dict) else {"value": marker}
    return layouts


def read_marker(handle: BinaryIO, offset: int, size: int) -> str:
    """A ComfyUI `comfy_quant` marker: a small uint8 tensor holding JSON, read as bytes."""
    if size > _MARKER_BYTES_LIMIT:
        return ""
    handle.seek(offset)
    return handle.read(size).decode("utf-8", errors="replace")


def mentions_rotation(document: object) -> bool:
    """Whether a layout (or any JSON) names a rotation: ConvRot, QuaRot, Hadamard, QuIP."""
    if isinstance(document, dict) and document.get("convrot") is False:
        document = {k: v for k, v in document.items() if k != "convrot"}
    flat = json.dumps(document).lower()
    return any(word in flat for word in ROTATION_WORDS)


def _json(text: str) -> object:
    try:
        return loads_bounded(text) if text else {}
    except ValueError:  # not JSON, or nested too deep to parse safely
        return {"value": text}


def _excerpt(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


# ---- other model families --------------------------------------------------------------

_FLUX1_MARKS = (
    re.compile(r"(^|\.)double_blocks\.\d+\.(img|txt)_mod\.lin\."),
    re.compile(r"(^|\.)single_blocks\.\d+\.modulation\.lin\."),
    re.compile(r"(^|\.)vector_in\."),
    re.compile(r"(^|\.)transformer_blocks\.\d+\.norm1(_context)?\.linear\."),
    re.compile(r"(^|\.)time_text_embed\."),
)
_FLUX2_DEV_HIDDEN = 6144  # 48 heads x 128
_FLUX2_DEV_SINGLE_BLOCKS = 48


def _family(headers: list[SafetensorsHeader], keys: list[str]) -> ForeignFile | None:
    shapes = {key: info.shape for header in headers for key, info in header.tensors.items()}
    if any(mark.search(key) for key in keys for mark in _FLUX1_MARKS):
        doubles, singles = _max_index(_DOUBLE, keys) + 1, _max_index(_SINGLE, keys) + 1
        hidden = _shape_of(shapes, ("img_in.weight", "x_embedder.weight"))
        size = f"hidden {hidden[0]}, " if hidden else ""
        return _named("flux1", f"a FLUX.1 transformer ({size}{doubles} double / {singles} single blocks), not FLUX.2")
    hidden = _shape_of(shapes, ("img_in.weight", "x_embedder.weight"))
    singles = _max_index(_SINGLE, keys) + 1
    flux2 = any("double_stream_modulation" in key for key in keys)
    if flux2 and ((hidden and hidden[0] == _FLUX2_DEV_HIDDEN) or singles == _FLUX2_DEV_SINGLE_BLOCKS):
        return ForeignFile("flux2-dev", f"a FLUX.2 [dev] transformer ({singles} single blocks), not a klein size", _ADVICE["flux2-dev"], runnable=True)
    return None


def _shape_of(shapes: dict[str, tuple[int, ...]], names: tuple[str, ...]) -> tuple[int, ...] | None:
    for key, shape in shapes.items():
        if any(key == name or key.endswith("." + name) for name in names):
            return shape
    return None


__all__ = ["ROTATION_PARAM", "ForeignFile", "LoraInfo", "layer_layouts", "mentions_rotation", "read_marker", "recognise"]
