"""`load_pipeline`: a standard diffusers `Flux2KleinPipeline` whose transformer (and text encoder) is INT8.

Users get back the pipeline they already know how to call; only the quantized
components are ours. A given checkpoint is checked against the base from its header,
loaded first and handed to `from_pretrained`, so the base's own BF16 copy of that
component is neither downloaded nor loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import Flux2KleinPipeline

from ..errors import ConfigError, Flux2Int8Error
from ..formats.checkpoint import open_checkpoint
from ..formats.header import metadata_object, read_header
from ..loading import load_transformer
from ..loading.dtypes import resolve_dtype
from ..loading.skeleton import build_empty_model
from ..loading.transformer import ActivationChoice
from ..formats.config import infer_config
from ..loading.text_encoder import CONFIG_METADATA as TEXT_ENCODER_CONFIG
from ..lora.apply import check_lora_fits, load_loras, parse_lora_spec, read_lora
from ..nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, NANO_STEPS, is_nano
from ..variants import VARIANTS, architecture_of
from .builtin import apply_builtin_defaults
from .compilation import compile_transformer, resolve_compile_mode
from ..loading.hub import resolve_checkpoint
from .hub import BaseSource, check_safetensors_only, download_pipeline, download_text_encoder_weights, parse_base, resolve_lora, transformer_config_of
from .placement import OFFLOAD_MODES, choose_offload, place
from .quiet import silence_cut_encoder_type_warning, silence_ignored_guidance_warning
from .text_encoders import load_base_text_encoder, load_file_text_encoder, text_encoder_choice

Offload = Literal["none", "model", "group", "sequential", "auto"]
logger = logging.getLogger("flux2_int8")
# klein's transformer reads three Qwen3 hidden states (layers 9, 18, 27) concatenated.
_TEXT_HIDDEN_STATES = 3
# The config entries that decide tensor shapes: a checkpoint must agree with the base on all.
_SHAPE_KEYS = ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim", "in_channels")


# klein pads every prompt to this many tokens (the pipeline's own default).
KLEIN_MAX_SEQUENCE_LENGTH = 512


@dataclass(frozen=True)
class SamplingDefaults:
    """How a pipeline samples unless told otherwise (distilled: 4 steps, guidance unused).

    `size` is the native square size in pixels where the model has one (nano: 128),
    else None (the pipeline's own: the first reference's size, else 1024).
    """

    steps: int
    guidance: float
    size: int | None = None
    max_sequence_length: int = KLEIN_MAX_SEQUENCE_LENGTH


def sampling_defaults(pipeline: Flux2KleinPipeline) -> SamplingDefaults:
    """The published defaults for the pipeline's kind, read from its `is_distilled` flag (nano's, for nano's shape)."""
    if is_nano(dict(pipeline.transformer.config)):
        return SamplingDefaults(steps=NANO_STEPS, guidance=1.0, size=NANO_SIZE, max_sequence_length=NANO_MAX_SEQUENCE_LENGTH)
    distilled = bool(pipeline.config.get("is_distilled", False))
    variant = next(v for v in VARIANTS.values() if v.distilled == distilled)
    return SamplingDefaults(steps=variant.default_steps, guidance=variant.default_guidance)


def load_pipeline(
    base: str | Path,
    transformer: str | Path | None = None,
    text_encoder: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    compile: str | bool = "off",
    offload: Offload = "none",
    local_files_only: bool = False,
    activations: ActivationChoice = "auto",
    loras: Sequence[str] = (),
    fuse_loras: bool = False,
    *,
    torch_dtype: torch.dtype | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    device_map: str | None = None,
    gpu_memory: str | int | None = None,
    plan_resolution: int | None = None,
    plan_batch: int = 1,
    threads: int | None = None,
) -> Flux2KleinPipeline:
    """Load a FLUX.2 [klein] pipeline, optionally with an INT8 / BF16 / FP8 transformer and an INT8 text encoder.

    `base` is a variant name (`klein-4b`, `klein-9b`, `klein-base-4b`, `klein-base-9b`),
    `nano` (the small trained pipeline shipped with the package), a hub repository id
    or a local pipeline folder. `transformer` is a checkpoint path (BFL
    single file, diffusers or ModelOpt folder) or a hub file `owner/repo/file.safetensors`;
    `text_encoder` is "bf16" (default: the base's, in `dtype`), "int8" (the base's,
    quantized at load time with per-channel weights and per-token activations, cached on
    disk so the next load reads INT8 directly; see docs/generate.md) or an INT8 text
    encoder file from `flux2-int8 quantize --text-encoder` (path or hub file). Every text
    encoder is cut to the Qwen3 layers the pipeline reads (no final norm, no LM head;
    the bytes saved are logged on the `flux2_int8` logger). The base's own weights of a
    replaced component are neither downloaded nor loaded. `device` defaults to CUDA when
    available. `offload` ("model", "group" or "sequential") uses diffusers' CPU offload
    (model, group offload with CUDA streams, leaf) and needs CUDA; "auto" plans the
    memory from the headers (`flux2_int8.plan_memory`, for `plan_resolution` (default
    the model's native size) and `plan_batch`) against the GPU's free memory (or
    `gpu_memory`, e.g. "16GB") and takes the fastest placement that fits, logging what
    it chose and why (also in `pipe.flux2_int8_placement`). `compile` is "off",
    "full" (the whole transformer under `torch.compile(fullgraph=True)`), "regional" (each
    repeated block, compiled once per block class: much faster to compile) or "on" (full,
    until regional is measured no slower per step on a GPU); the first call then compiles.
    `True`/`False` still work, with a warning. `activations` is how INT8 layers quantize
    their input (see `load_transformer`): "auto" (the file's calibrated scales, else per
    token), "static" or "dynamic". `loras` are `PATH_OR_REPO[:SCALE]` specs, checked
    against the transformer and loaded (unfused, before compiling) with diffusers'
    `load_lora_weights`; `fuse_loras` merges them into the weights instead (see
    docs/generate.md, LoRA).

    diffusers' own spellings work too: `torch_dtype` (same as `dtype`, default bfloat16),
    `revision` (of the base's hub repository), `token` (for gated repositories and hub
    files), and `device_map` ("balanced", "cuda", "cpu": passed to diffusers for the
    components it loads; a checkpoint this package loads goes to `device`).

    A built-in model samples by its own defaults: `pipe(prompt=...)` on `nano` draws at
    128 px with 32 text tokens in 4 steps (diffusers' are 1024 px, 512 tokens, 50 steps);
    anything passed to the call wins. `threads` is the CPU intra-op thread count while the
    pipeline runs (None: one thread for models as small as nano and tiny, unless
    `OMP_NUM_THREADS` is set; else PyTorch's); it applies during each call only and the
    caller's count is restored after (docs/generate.md, Python API defaults).

    Returns
    -------
    Flux2KleinPipeline
        diffusers' own pipeline class, so everything built on diffusers keeps working.

    Raises
    ------
    Flux2Int8Error
        Any bad input (a checkpoint of another size, an unknown base, a file missing offline),
        before anything large is downloaded or loaded.

    Examples
    --------
    >>> pipe = load_pipeline("klein-9b", transformer="flux-2-klein-9b-int8.safetensors", torch_dtype=torch.bfloat16)  # doctest: +SKIP
    >>> image = pipe(prompt="A red sports car", num_inference_steps=4).images[0]  # doctest: +SKIP
    """
    dtype = resolve_dtype(dtype, torch_dtype)
    if device_map is not None and offload != "none":
        raise ConfigError(f"device_map='{device_map}' and offload '{offload}' both place the weights; choose one")
    compile_mode = resolve_compile_mode(compile)
    silence_ignored_guidance_warning()
    silence_cut_encoder_type_warning()
    device = _resolve_device(device, offload)
    source = parse_base(base)
    checkpoint = resolve_checkpoint(transformer, local_files_only, token) if transformer is not None else None
    encoder_choice = text_encoder_choice(text_encoder)
    encoder_file = resolve_checkpoint(text_encoder, local_files_only, token) if encoder_choice is None else None
    cut_base_encoder = encoder_choice == "int8" or (encoder_choice == "bf16" and device_map is None)
    lora_files = resolve_loras(loras, local_files_only)
    if source.variant is not None:  # a variant's shapes are known: check before any download
        _check_fits(checkpoint, encoder_file, source.variant.architecture.transformer_config(), source.spec)
    folder = _base_folder(source, checkpoint is not None, encoder_file is not None or cut_base_encoder, local_files_only, revision, token)
    if cut_base_encoder and source.folder is None:
        download_text_encoder_weights(source.repo_id, folder, local_files_only, revision, token)
    config = transformer_config_of(folder)
    if source.variant is None:
        _check_fits(checkpoint, encoder_file, config, source.spec)
    check_loras_fit([path for path, _ in lora_files], config)  # before any weight is loaded
    if cut_base_encoder:  # read by us, not by from_pretrained: refuse a pickle-only base component first, by name
        check_safetensors_only(folder, skip=[name for name, given in (("transformer", checkpoint), ("text_encoder", encoder_file)) if given is not None])
    placement = None
    if offload == "auto":
        offload, placement = _auto_offload(folder, checkpoint, encoder_file or encoder_choice, dtype, device, gpu_memory, plan_resolution, plan_batch)
    load_device = device if offload == "none" else torch.device("cpu")
    components: dict[str, Any] = {}
    if checkpoint is not None:
        components["transformer"] = load_transformer(checkpoint, config=config, device=load_device, dtype=dtype, activations=activations)
    if encoder_file is not None:
        components["text_encoder"] = load_file_text_encoder(encoder_file, folder, load_device, dtype)
    elif cut_base_encoder:
        components["text_encoder"] = load_base_text_encoder(folder, encoder_choice, load_device, dtype)
    pipeline = _from_pretrained(folder, components, source, dtype, device_map)
    if lora_files:
        load_loras(pipeline, [path for path, _ in lora_files], [scale for _, scale in lora_files], fuse=fuse_loras)
    if device_map is None:
        place(pipeline, device, offload)
    pipeline.flux2_int8_placement = placement or {"offload": offload, "reason": "asked for", "peaks": {}}
    compile_transformer(pipeline.transformer, compile_mode)
    return apply_builtin_defaults(pipeline, threads)


def resolve_loras(specs: Sequence[str], local_files_only: bool = False) -> list[tuple[Path, float]]:
    """`PATH_OR_REPO[:SCALE]` specs -> (local file, scale), hub LoRAs fetched through the cache."""
    parsed = [parse_lora_spec(spec) for spec in specs]
    return [(resolve_lora(spec.source, local_files_only), spec.scale) for spec in parsed]


def apply_loras(pipeline: Flux2KleinPipeline, specs: Sequence[str], fuse: bool = False, local_files_only: bool = False) -> list[str]:
    """Load `PATH_OR_REPO[:SCALE]` LoRAs into a loaded pipeline (checked first; see `flux2_int8.lora.load_loras`)."""
    files = resolve_loras(specs, local_files_only)
    return load_loras(pipeline, [path for path, _ in files], [scale for _, scale in files], fuse=fuse)


def check_run_inputs(base: str | Path, checkpoints: Sequence[str | Path] = (), loras: Sequence[str] = (), local_files_only: bool = False) -> None:
    """Check, before a run claims or computes anything, that its checkpoints and LoRAs fit the base.

    From headers and the base's transformer config alone (LoRAs against a transformer
    built on the meta device): a typo, a checkpoint of another size or a LoRA for
    another model is refused before `eval` writes run.json or a single image. A hub
    base whose config is not on this machine yet is checked when it is loaded.
    """
    source = parse_base(base)
    if source.variant is not None:
        config: dict[str, Any] | None = source.variant.architecture.transformer_config()
    else:
        config = transformer_config_of(source.folder) if source.folder is not None else None
    files = resolve_loras(loras, local_files_only)
    if config is None:
        return
    for checkpoint in checkpoints:
        path = Path(checkpoint).expanduser()
        if path.exists():
            check_checkpoint_fits(path, config, source.spec)
    check_loras_fit([path for path, _ in files], config)


def check_loras_fit(paths: Sequence[Path], transformer_config: dict[str, Any]) -> None:
    """Each LoRA file against a transformer of this config built on the meta device: refused before a weight loads."""
    if not paths:
        return
    skeleton = build_empty_model(transformer_config)
    for path in paths:
        check_lora_fits(path, read_lora(path, Flux2KleinPipeline), skeleton)


def _check_fits(checkpoint: Path | None, encoder_file: Path | None, transformer_config: dict[str, Any], base_label: str) -> None:
    if checkpoint is not None:
        check_checkpoint_fits(checkpoint, transformer_config, base_label)
    if encoder_file is not None:
        check_text_encoder_fits(encoder_file, transformer_config, base_label)


def check_checkpoint_fits(checkpoint: Path, base_config: dict[str, Any], base_label: str) -> None:
    """Refuse a checkpoint of another size than the base (e.g. 9B weights with a 4B base), from headers only."""
    found = infer_config(open_checkpoint(checkpoint))
    if all(found.get(key) == base_config.get(key) for key in _SHAPE_KEYS):
        return
    raise ConfigError(
        f"{checkpoint} holds {_describe(found)}, but the base '{base_label}' needs {_describe(base_config)}: "
        "pass a checkpoint made for that base, or the base the checkpoint was made for"
    )


def check_text_encoder_fits(path: Path, transformer_config: dict[str, Any], base_label: str) -> None:
    """Refuse a text encoder whose hidden states the base's transformer cannot take (Qwen3-8B with a 4B base).

    The transformer reads three of the encoder's hidden states concatenated, so its
    `joint_attention_dim` is three times the encoder's hidden size. Read from the
    config in the file's header; without one, `load_text_encoder` checks every shape.
    """
    document = metadata_object(read_header(path), TEXT_ENCODER_CONFIG)
    if document is None:
        return
    hidden = document.get("hidden_size")
    expected = transformer_config["joint_attention_dim"] // _TEXT_HIDDEN_STATES
    if hidden != expected:
        raise ConfigError(
            f"{path} is a text encoder of hidden size {hidden}, but the base '{base_label}' needs hidden size {expected} "
            "(klein 4B uses Qwen3-4B, 2560; klein 9B uses Qwen3-8B, 4096)"
        )


def _describe(config: dict[str, Any]) -> str:
    shape = (
        f"{config.get('num_layers')} double + {config.get('num_single_layers')} single blocks, "
        f"hidden {config.get('num_attention_heads', 0) * config.get('attention_head_dim', 0)}, text dim {config.get('joint_attention_dim')}"
    )
    architecture = architecture_of(config)
    if architecture is None:
        return f"a transformer of {shape}"
    return f"a {architecture.name.rsplit('-', 1)[1].upper()}-size transformer ({shape})"


def _resolve_device(device: str | torch.device | None, offload: str) -> torch.device:
    """CUDA when available; offload is refused on CPU (it moves weights to a GPU and back)."""
    if offload not in OFFLOAD_MODES:
        raise ConfigError(f"unknown offload mode '{offload}': expected one of {', '.join(OFFLOAD_MODES)}")
    try:
        resolved = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise ConfigError(f"invalid device '{device}' ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    if offload not in ("none", "auto") and resolved.type != "cuda":
        raise ConfigError(f"offload '{offload}' keeps weights on the CPU and runs them on a CUDA GPU; with device '{resolved}' use offload 'none'")
    return resolved


def _base_folder(source: BaseSource, skip_transformer_weights: bool, skip_text_encoder_weights: bool, local_files_only: bool, revision: str | None = None, token: str | bool | None = None) -> Path:
    if source.folder is not None:
        return source.folder
    assert source.repo_id is not None  # parse_base returns a folder or a repository
    return download_pipeline(source.repo_id, skip_transformer_weights, local_files_only, skip_text_encoder_weights, revision=revision, token=token)


def _from_pretrained(folder: Path, components: dict[str, Any], source: BaseSource, dtype: torch.dtype, device_map: str | None = None) -> Flux2KleinPipeline:
    """Build the pipeline from local files only; given components replace the folder's, a variant name decides `is_distilled`."""
    check_safetensors_only(folder, skip=components)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "use_safetensors": True, **components}
    if source.variant is not None:
        kwargs["is_distilled"] = source.variant.distilled
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        return Flux2KleinPipeline.from_pretrained(folder, **kwargs)
    except (NotImplementedError, ValueError) as error:  # diffusers refuses a device_map it does not support
        raise ConfigError(f"device_map='{device_map}': {error}") from None
    except OSError as error:  # a missing or broken component file in the folder or cache
        raise Flux2Int8Error(f"{folder}: the pipeline cannot be loaded from this folder ({error})") from None


def _auto_offload(folder: Path, checkpoint: Path | None, text_encoder: str | Path, dtype: torch.dtype, device: torch.device, gpu_memory: str | int | None, resolution: int | None, batch: int) -> tuple[str, dict[str, Any]]:
    """`offload="auto"`: the memory plan's choice for this device, logged with its reason."""
    native = NANO_SIZE if is_nano(transformer_config_of(folder)) else 1024
    tokens = NANO_MAX_SEQUENCE_LENGTH if is_nano(transformer_config_of(folder)) else KLEIN_MAX_SEQUENCE_LENGTH
    mode, plan, why = choose_offload(folder, checkpoint, text_encoder, dtype, device, gpu_memory, resolution or native, batch, tokens)
    logger.info("offload auto: %s (%s)", mode, why)
    return mode, {"offload": mode, "reason": why, "peaks": dict(plan.peaks) if plan else {}}
