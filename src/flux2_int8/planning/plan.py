"""`plan_memory`: what a klein pipeline will hold on the GPU, and which placement fits, before a byte is loaded.

Weights are counted from the safetensors headers with the loaders' own rules
(`sizes`), activations estimated from the configs (`activations`). Each placement's peak:

- `none` (all on the GPU): every component's weights, plus the largest activation peak;
- `model` (diffusers' model CPU offload): one component at a time, weights and activations;
- `group` (diffusers' group offload, block level, CUDA streams): a component's weights
  outside its repeated blocks, two blocks (the running one and the one prefetched), activations;
- `sequential` (leaf offload): the largest module twice, activations.

Each adds `RESERVE_BYTES` for the CUDA context and the allocator's slack. The fastest
placement that fits is the choice (`none` > `model` > `group` > `sequential`: for a few
steps, moving each component once beats moving every block at every step).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..formats.checkpoint import INT8, checkpoint_from_headers, open_checkpoint
from ..formats.header import metadata_object
from ..variants import VARIANTS
from .activations import Workload, text_encoder_peak, transformer_peak, vae_decode_peak
from .sizes import TensorBytes, compute_bytes, float_component_bytes, stored_text_encoder_bytes, text_encoder_bytes, transformer_bytes
from .sources import COMPONENTS, PipelineHeaders, cached_pipeline, file_header, hub_pipeline, local_pipeline
from .text_encoder import CUT_FROM_LAYERS, cut_for

PLACEMENTS = ("none", "model", "group", "sequential")
RESERVE_BYTES = 1 << 30
GIB = 1 << 30
TEXT_ENCODER_CONFIG = "text_encoder_config"  # the header entry of INT8 text encoder files (loading.text_encoder)
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ComponentPlan:
    """One component as it will sit on the GPU."""

    name: str
    source: str
    weight_bytes: int
    activation_bytes: int
    resident_bytes: int  # weights outside the repeated blocks (group offload keeps these on while the component runs)
    largest_block_bytes: int
    largest_module_bytes: int
    note: str = ""


@dataclass(frozen=True)
class MemoryPlan:
    """The bytes of each component, each placement's peak, and the placement chosen for `gpu_memory` (if given)."""

    base: str
    workload: Workload
    components: tuple[ComponentPlan, ...]
    peaks: dict[str, int]
    gpu_memory: int | None = None
    choice: str | None = None
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def weight_bytes(self) -> int:
        return sum(c.weight_bytes for c in self.components)

    def component(self, name: str) -> ComponentPlan:
        return next(c for c in self.components if c.name == name)

    def fits(self, memory: int) -> list[str]:
        """The placements whose peak fits `memory` bytes, fastest first."""
        return [p for p in PLACEMENTS if self.peaks[p] <= memory]

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["weight_bytes"] = self.weight_bytes
        return document


def parse_memory(value: str | int | float) -> int:
    """`24GB`, `24GiB`, `24G`, `16000M` or a byte count -> bytes. GB means GiB, as cards are sold (a "24 GB" card has 24 GiB)."""
    if isinstance(value, (int, float)):
        return int(value)
    match = _MEMORY.match(value)
    if match is None:
        raise ConfigError(f"GPU memory '{value}': expected a size such as 24GB, 16GiB or 12000MB")
    number, unit = float(match[1]), match[2].upper()
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def plan_memory(
    base: str | Path | PipelineHeaders,
    transformer: str | Path | None = None,
    text_encoder: str | Path | None = "bf16",
    resolution: int | tuple[int, int] = 1024,
    batch: int = 1,
    gpu_memory: str | int | None = None,
    dtype: str = "bfloat16",
    max_sequence_length: int = 512,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> MemoryPlan:
    """Plan a klein pipeline's GPU memory from safetensors headers alone (no weights are read or downloaded).

    Parameters
    ----------
    base : str, Path or PipelineHeaders
        A local pipeline folder, a variant name (`klein-9b`, ...) or a hub repository id
        (headers by range requests).
    transformer : str or Path, optional
        The checkpoint `load_pipeline` will load (a local file or folder); default the base's own.
    text_encoder : {"bf16", "int8"}, str or Path
        The base's encoder in the compute dtype, quantized to INT8 at load, or an INT8 file.
        Always cut to the layers the pipeline reads.
    resolution, batch, max_sequence_length
        The workload: a side (or (height, width)) in pixels, images per call, prompt tokens.
    gpu_memory : str or int, optional
        The card's memory (`24GB`); with it, `choice` is the fastest placement that fits.
    dtype : {"bfloat16", "float16", "float32"}
        The compute dtype of float layers.

    Returns
    -------
    MemoryPlan
    """
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ConfigError(f"dtype '{dtype}': expected bfloat16, float16 or float32")
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    if min(height, width, batch) < 1:
        raise ConfigError("resolution and batch must be positive")
    work = Workload(height, width, batch, max_sequence_length)
    headers = base if isinstance(base, PipelineHeaders) else _pipeline_headers(base, transformer, text_encoder, revision, token)
    element = compute_bytes(dtype)
    components = (
        _transformer_plan(headers, transformer, work, dtype, element),
        _text_encoder_plan(headers, text_encoder, work, dtype, element),
        _vae_plan(headers, work, dtype, element),
    )
    peaks = placement_peaks(components)
    memory = parse_memory(gpu_memory) if gpu_memory is not None else None
    choice, reason = choose_placement(peaks, memory) if memory is not None else (None, "")
    return MemoryPlan(headers.label, work, components, peaks, memory, choice, reason, tuple(c.note for c in components if c.note))


def placement_peaks(components: tuple[ComponentPlan, ...]) -> dict[str, int]:
    """Each placement's peak bytes (see the module docstring), the reserve included."""
    return {
        "none": sum(c.weight_bytes for c in components) + max(c.activation_bytes for c in components) + RESERVE_BYTES,
        "model": max(c.weight_bytes + c.activation_bytes for c in components) + RESERVE_BYTES,
        "group": max(c.resident_bytes + 2 * c.largest_block_bytes + c.activation_bytes for c in components) + RESERVE_BYTES,
        "sequential": max(2 * c.largest_module_bytes + c.activation_bytes for c in components) + RESERVE_BYTES,
    }


def choose_placement(peaks: dict[str, int], memory: int) -> tuple[str | None, str]:
    """The fastest placement whose peak fits `memory`, and why (None when even `sequential` does not fit)."""
    for placement in PLACEMENTS:
        if peaks[placement] <= memory:
            slower = [p for p in PLACEMENTS[: PLACEMENTS.index(placement)]]
            refused = "; ".join(f"'{p}' needs {peaks[p] / GIB:.2f} GiB" for p in slower)
            return placement, f"'{placement}' needs {peaks[placement] / GIB:.2f} GiB of {memory / GIB:.2f} GiB" + (f" ({refused})" if refused else ": everything fits on the GPU" if placement == "none" else "")
    return None, f"nothing fits in {memory / GIB:.2f} GiB: even 'sequential' needs {peaks['sequential'] / GIB:.2f} GiB (lower the resolution or batch)"


def _pipeline_headers(base: str | Path, transformer: Any, text_encoder: Any, revision: str | None, token: str | bool | None) -> PipelineHeaders:
    need = tuple(c for c in COMPONENTS if not (c == "transformer" and transformer is not None) and not (c == "text_encoder" and text_encoder not in (None, "bf16", "int8")))
    path = Path(str(base)).expanduser()
    if path.is_dir():
        return local_pipeline(path, need)
    spec = str(base).strip().lower()
    repo_id = VARIANTS[spec].hub_id if spec in VARIANTS else str(base)
    if "/" not in repo_id:
        raise ConfigError(f"base '{base}' is neither a pipeline folder, a variant ({', '.join(VARIANTS)}) nor a hub repository id")
    cached = cached_pipeline(repo_id, need, revision)
    return cached if cached is not None else hub_pipeline(repo_id, need, revision, token)


def _transformer_plan(headers: PipelineHeaders, transformer: str | Path | None, work: Workload, dtype: str, element: int) -> ComponentPlan:
    if transformer is not None and Path(transformer).expanduser().is_dir():
        checkpoint = open_checkpoint(Path(transformer).expanduser())
        source = str(transformer)
    elif transformer is not None:
        header = file_header(transformer)
        checkpoint = checkpoint_from_headers(header.path, [header], None)
        source = str(transformer)
    else:
        folder = headers.folder / "transformer" if headers.folder else Path(f"{headers.label}/transformer")
        checkpoint = checkpoint_from_headers(folder, headers.headers["transformer"], headers.configs["transformer"])
        source = "the base's transformer"
    sizes = transformer_bytes(checkpoint, dtype)
    int8 = INT8 in checkpoint.linear_kinds.values()
    return _component("transformer", f"{source} ({checkpoint.format})", sizes, transformer_peak(headers.configs["transformer"], work, element, int8))


def _text_encoder_plan(headers: PipelineHeaders, choice: str | Path | None, work: Workload, dtype: str, element: int) -> ComponentPlan:
    config = headers.configs["text_encoder"]
    if choice in (None, "bf16", "int8"):
        stored, quantize, source = headers.headers["text_encoder"], choice == "int8", "the base's text encoder" + (", INT8 at load" if choice == "int8" else f" in {dtype}")
    else:
        header = file_header(choice)
        stored, quantize, source = [header], False, f"{choice} (INT8 file)"
        config = metadata_object(header, TEXT_ENCODER_CONFIG) or config
    cut = cut_for(int(config["num_hidden_layers"]), config.get(CUT_FROM_LAYERS))
    sizes = text_encoder_bytes(stored, cut, dtype, quantize)
    int8 = quantize or any(info.dtype == "I8" for h in stored for info in h.tensors.values())
    full = stored_text_encoder_bytes(stored, dtype)
    note = f"text encoder cut to the {cut.depth} of {cut.full_depth} layers the pipeline reads, no final norm, no LM head: {full - text_encoder_bytes(stored, cut, dtype, False).total:,} bytes not loaded" if cut.cuts_anything else ""
    return _component("text_encoder", source, sizes, text_encoder_peak(config, cut.depth, work, element, int8), note)


def _vae_plan(headers: PipelineHeaders, work: Workload, dtype: str, element: int) -> ComponentPlan:
    sizes = float_component_bytes(headers.headers["vae"], dtype)
    return _component("vae", f"the base's VAE in {dtype}", sizes, vae_decode_peak(headers.configs["vae"], work, element))


def _component(name: str, source: str, sizes: TensorBytes, activations: int, note: str = "") -> ComponentPlan:
    blocks = sizes.blocks()
    return ComponentPlan(name, source, sizes.total, activations, sizes.total - sum(blocks.values()), max(blocks.values(), default=0), sizes.largest_module(), note)


