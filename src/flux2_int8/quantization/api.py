"""`flux2_int8.quantize(...)`: a BF16 FLUX.2 [klein] pipeline -> an INT8 W8A8 checkpoint.

Options are checked before anything heavy is loaded (a bad prompt file or output
path fails in a second, not after an hour of calibration); then the pipeline is
loaded once, calibrated through its own `__call__`, and the checkpoint (and the text
encoder beside it) written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..version import __version__
from ..errors import Flux2Int8Error
from ..limits import SAMPLES, STEPS
from ..formats.keys import map_diffusers_module
from ..generate.pipeline import Offload
from ..int8.rotation import hadamard_kind
from .calibrate import CalibrationRun, Schedule, make_schedule, run_calibration
from ..formats.config import FORMAT_NAME
from ..formats.write import write_bfl_checkpoint
from .export import quantized_linears, quantized_state_dict, write_comfy_checkpoint, write_diffusers_folder
from .observers import HISTOGRAM_BINS, InputAmaxObserver, linear_names
from .plan import OutputFormat, QuantizePlan, plan_run, text_encoder_path
from .prompts import draw_samples
from .recipe import CalibrationMethod, Recipe, matches, rotated_linears, unify_qkv
from ..channels import foldable_consumers
from .smoothquant import apply_smoothquant
from .text_encoder import text_encoder_recipe, text_encoder_state_dict, write_text_encoder

if TYPE_CHECKING:
    from diffusers import Flux2KleinPipeline



@dataclass(frozen=True)
class CalibrationStatistics:
    """What calibration saw. Ranges are per linear, by diffusers / transformers module name.

    `input_amax` is the max |input| recorded; `input_range` is what each
    `input_scale = range / 127` was made from (the method applied, SmoothQuant's
    division folded in, q/k/v given their shared max).
    """

    input_amax: dict[str, float]
    input_range: dict[str, float]
    text_encoder_input_amax: dict[str, float]
    text_encoder_input_range: dict[str, float]
    samples: tuple[str, ...]
    steps: int
    total_steps: int
    transformer_calls: int
    reference_images: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuantizeResult:
    """Where the checkpoint went, and the statistics it was made from."""

    path: Path
    text_encoder_path: Path | None
    statistics: CalibrationStatistics
    kept: tuple[str, ...]  # transformer linears left in float (diffusers names)
    quantized: tuple[str, ...]  # transformer linears made INT8


def quantize(
    base: str | Path | Flux2KleinPipeline,
    out: str | Path,
    transformer: str | Path | None = None,
    samples: int = 256,
    steps: int | None = None,
    resolution: int | None = None,
    seed: int = 0,
    prompts: str | Path | None = None,
    calibration: str | None = None,
    smoothquant: float | None = None,
    quantize_modulation: bool = False,
    keep: Sequence[str] = (),
    text_encoder: bool = False,
    format: OutputFormat = "bfl",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.bfloat16,
    offload: Offload = "none",
    progress: bool = True,
    activations: str = "static",
    local_files_only: bool = False,
    calibrator: Callable[..., CalibrationRun] = run_calibration,
    overwrite: bool = False,
    rotation: str = "off",
) -> QuantizeResult:
    """Calibrate a BF16 klein pipeline and write its INT8 W8A8 transformer (and text encoder).

    `base` is a variant name, hub id or local pipeline folder, or a float
    `Flux2KleinPipeline` already loaded (say in a notebook; it is used as it is, its
    device and dtype included; only `smoothquant` changes it, folding its factors into the
    transformer's weights); `transformer` an optional
    BF16 checkpoint (e.g. a fine-tune) that replaces the base's transformer. `samples`
    prompts are drawn with `seed` from `prompts` (a JSONL file, or `nano`; default the
    shipped set of 768, and nano's training prompts for a nano base: the name, a folder or a
    loaded pipeline holding nano) and run through the pipeline at `resolution` (default the
    model's native size: 1024, nano 128), visiting `steps` of the model's generation steps
    (default all: 4 distilled, 50 base with CFG). `calibration`
    is "auto" (None: the default, percentile:99.99 for the transformer's plain static scales, max
    with `smoothquant`, a `rotation` and for the text encoder; chosen on the nano /
    nano-outliers table of docs/quantize.md), "max" or "percentile:P" (refused with dynamic
    activations, where nothing is calibrated); `smoothquant` an alpha in (0, 1] (experimental).
    `keep` adds fnmatch patterns of linears to leave in float (diffusers or BFL names).
    `format` "bfl" writes one single file, "comfy" the same with the markers ComfyUI
    needs to load it as INT8, "diffusers" a transformer folder; with
    `text_encoder` the Qwen3 linears are quantized too and written to
    `<out stem>-text-encoder.safetensors`. `activations` "static" (default; "auto" means the same) writes the
    calibrated `input_scale` of every transformer linear; "dynamic" writes none (activations
    are then quantized per token at run time, as ComfyUI does), and skips calibration
    unless SmoothQuant or the text encoder needs it. `calibrator` runs the samples
    through the observers (`run_calibration`'s signature); `flux2_int8.scale_out` gives one
    that spreads them over a Ray cluster. An output that is or holds one of the run's
    inputs is refused, and so is a non-empty folder flux2-int8 did not write unless
    `overwrite` (docs/reliability.md). `rotation` "convrot" (group 256) or "convrot:G" rotates
    every quantized linear whose input width G divides (ConvRot, see `int8.rotation`): weights
    rotated before they are quantized, static ranges calibrated on the rotated input; "off"
    (default) writes plain INT8. See docs/quantize.md.
    """
    if offload == "sequential":  # it parks weights on the meta device between calls; export needs them
        raise Flux2Int8Error("--offload sequential cannot be used to quantize (the weights are not in the model between calls); use --offload model")
    SAMPLES.check(samples, "samples")
    if steps is not None:
        STEPS.check(steps, "steps")
    plan = plan_run(base, out, transformer, resolution, prompts, calibration, smoothquant, quantize_modulation, keep, text_encoder, format, seed, activations, overwrite, rotation)
    drawn = draw_samples(plan.prompts, samples, seed) if plan.calibrates else []
    pipe = load_float_pipeline(base, transformer, device, dtype, offload, local_files_only)
    schedule = _schedule(pipe, steps)
    targets = quantized_linears(pipe.transformer, plan.recipe)
    if not targets:
        raise Flux2Int8Error(f"--keep {', '.join(repr(p) for p in keep)} keeps every linear of the transformer in float: nothing would be quantized")
    rotations = rotated_linears(pipe.transformer, targets, plan.rotation)
    encoder_recipe = text_encoder_recipe(plan.recipe.extra_keep)
    encoder_targets = quantized_linears(pipe.text_encoder, encoder_recipe) if text_encoder else []
    _check_keep_patterns(plan.recipe.extra_keep, pipe, text_encoder)
    observer = _observer(pipe.transformer, targets, plan, plan.method, rotations)
    encoder_observer = _observer(pipe.text_encoder, encoder_targets, plan, plan.encoder_method) if text_encoder else None
    observers = [observer] + ([encoder_observer] if encoder_observer else [])
    run = calibrator(pipe, drawn, plan.prompts, schedule, plan.resolution, plan.seed, observers, progress)
    ranges = _transformer_ranges(pipe.transformer, observer, targets, plan) if plan.calibrates else {}
    encoder_ranges = _ranges(encoder_observer, encoder_targets, plan.encoder_method) if encoder_observer else {}
    statistics = _statistics(observer, ranges, encoder_observer, encoder_ranges, run, schedule)
    kept = tuple(n for n in linear_names(pipe.transformer) if n not in targets)
    metadata = _metadata(plan, schedule, run, base, transformer, dtype, rotations)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    # The text encoder first, so a finished transformer file means the whole run finished.
    encoder_path = _write_text_encoder(pipe.text_encoder, encoder_ranges, encoder_recipe, plan, metadata) if text_encoder else None
    path = _write_transformer(pipe.transformer, ranges, plan, metadata, kept, rotations)
    return QuantizeResult(path, encoder_path, statistics, kept, tuple(targets))


def load_float_pipeline(base: str | Path | Flux2KleinPipeline, transformer: str | Path | None, device: str | torch.device | None, dtype: torch.dtype, offload: Offload, local_files_only: bool = False) -> Flux2KleinPipeline:
    """The BF16 pipeline through `load_pipeline` (or the one given); quantized transformers are refused."""
    if not isinstance(base, (str, Path)):
        return _given_pipeline(base, transformer)
    from ..formats.checkpoint import open_checkpoint
    from ..generate import load_pipeline
    from ..loading.hub import resolve_checkpoint

    checkpoint = None
    if transformer is not None:
        checkpoint = resolve_checkpoint(transformer, local_files_only=local_files_only)
        found = open_checkpoint(checkpoint).format
        if not found.endswith("-bf16"):
            raise Flux2Int8Error(f"--transformer {transformer}: a {found} checkpoint; quantize needs a float (BF16) transformer, as quantizing quantized weights compounds their rounding")
    pipe = load_pipeline(base, transformer=checkpoint, device=device, dtype=dtype, offload=offload, local_files_only=local_files_only)
    pipe.set_progress_bar_config(disable=True)  # one bar over the samples instead of one per call
    return pipe


def _given_pipeline(pipe: Any, transformer: str | Path | None) -> Flux2KleinPipeline:
    """A pipeline the caller loaded: a float klein pipeline, used as it is."""
    from diffusers import Flux2KleinPipeline

    from ..int8.linear import Fp8Linear, Int8Linear

    if not isinstance(pipe, Flux2KleinPipeline):
        raise Flux2Int8Error(f"base must be a variant, hub id, pipeline folder or a Flux2KleinPipeline, not {type(pipe).__name__}")
    if transformer is not None:
        raise Flux2Int8Error("transformer= replaces a base's transformer file; with a loaded pipeline, set pipe.transformer yourself")
    if any(isinstance(module, (Int8Linear, Fp8Linear)) for module in pipe.transformer.modules()):
        raise Flux2Int8Error("the pipeline's transformer is already quantized; quantize needs a float (BF16) transformer, as quantizing quantized weights compounds their rounding")
    return pipe


def _schedule(pipe: Flux2KleinPipeline, steps: int | None) -> Schedule:
    from ..generate import sampling_defaults

    defaults = sampling_defaults(pipe)
    return make_schedule(defaults.steps, defaults.guidance, steps)


def _check_keep_patterns(patterns: tuple[str, ...], pipe: Flux2KleinPipeline, text_encoder: bool) -> None:
    """A --keep pattern that matches no linear is a typo: say so instead of silently quantizing."""
    names = linear_names(pipe.transformer) + (linear_names(pipe.text_encoder) if text_encoder else [])
    for pattern in patterns:
        if not any(matches(pattern, name) for name in names):
            where = "transformer or text encoder" if text_encoder else "transformer"
            raise Flux2Int8Error(f"--keep '{pattern}' matches no linear of the {where} (e.g. 'single_blocks.*.linear2' or 'transformer_blocks.0.*')")


def _observer(model: nn.Module, targets: list[str], plan: QuantizePlan, method: CalibrationMethod, rotations: dict[str, int] | None = None) -> InputAmaxObserver:
    channels = [c for c in foldable_consumers(model) if c in targets] if plan.smoothquant is not None else []
    bins = HISTOGRAM_BINS if method.percentile is not None else 0
    return InputAmaxObserver(model, targets, channels=channels, histogram_bins=bins, rotations=rotations)


def _ranges(observer: InputAmaxObserver, targets: list[str], method: CalibrationMethod) -> dict[str, float]:
    """The activation range of every target, by the calibration method; never-run or all-zero inputs are errors."""
    recorded = observer.amax if method.percentile is None else observer.percentile(method.percentile)
    for name in targets:
        if name not in recorded:
            raise Flux2Int8Error(f"linear '{name}' never ran during calibration, so it has no activation range; leave it in float with --keep '{name}'")
        if not recorded[name] > 0:
            raise Flux2Int8Error(f"linear '{name}' only saw zero inputs during calibration; leave it in float with --keep '{name}'")
    return {name: recorded[name] for name in targets}


def _transformer_ranges(model: nn.Module, observer: InputAmaxObserver, targets: list[str], plan: QuantizePlan) -> dict[str, float]:
    ranges = _ranges(observer, targets, plan.method)
    if plan.smoothquant is not None:
        smoothed = apply_smoothquant(model, observer.channel_amax, plan.smoothquant, set(targets))
        ranges.update({name: value for name, value in smoothed.items() if name in ranges})
    return unify_qkv(ranges)


def _statistics(
    observer: InputAmaxObserver, ranges: dict[str, float], encoder_observer: InputAmaxObserver | None,
    encoder_ranges: dict[str, float], run: CalibrationRun, schedule: Schedule,
) -> CalibrationStatistics:
    return CalibrationStatistics(
        input_amax=observer.amax,
        input_range=ranges,
        text_encoder_input_amax=encoder_observer.amax if encoder_observer else {},
        text_encoder_input_range=encoder_ranges,
        samples=run.samples,
        steps=schedule.steps,
        total_steps=schedule.total_steps,
        transformer_calls=max(observer.calls.values(), default=0),
        reference_images=run.reference_images,
        seconds=run.seconds,
    )


def _metadata(plan: QuantizePlan, schedule: Schedule, run: CalibrationRun, base: Any, transformer: str | Path | None, dtype: torch.dtype, rotations: dict[str, int] | None = None) -> dict[str, Any]:
    """The recipe written into the header (kept layers are added per file, in its own naming)."""
    counts = {task: sum(plan.prompts.records[i].task == task for i in run.samples) for task in ("t2i", "edit", "composition")}
    return {
        "format": FORMAT_NAME,
        "flux2_int8_version": __version__,
        "recipe": {
            "weights": "int8 symmetric per output channel, weight_scale = amax / 127",
            "activations": "int8 static per tensor, input_scale = range / 127, q/k/v share one" if plan.activations == "static" else "int8 dynamic per token at run time (no input_scale)",
            "method": plan.method.spec,
            "samples": len(run.samples),
            "tasks": counts,
            "steps": schedule.steps,
            "schedule_steps": schedule.total_steps,
            "guidance_scale": schedule.guidance_scale,
            "resolution": plan.resolution,
            "seed": plan.seed,
            "prompts": {"source": plan.prompts.source, "sha256": plan.prompts.sha256},
            "quantize_modulation": plan.recipe.quantize_modulation,
            "keep_patterns": list(plan.recipe.patterns),
            "smoothquant": None if plan.smoothquant is None else {"alpha": plan.smoothquant, "folded": "into v / SwiGLU-value rows; no pre_quant_scale"},
            "base": str(base) if isinstance(base, (str, Path)) else f"a loaded {type(base).__name__} ({getattr(base, 'name_or_path', '') or 'in memory'})",
            "transformer": None if transformer is None else str(transformer),
            "calibration_dtype": str(dtype).removeprefix("torch."),
            "rotation": None if plan.rotation is None else {
                "kind": "convrot", "group_size": plan.rotation, "hadamard": hadamard_kind(plan.rotation),
                "layers": len(rotations or {}), "stored": "per layer: <layer>.rotation [G, G] float32 (comfy format: convrot markers)",
            },
        },
    }


def _with_kept(metadata: dict[str, Any], kept: list[str]) -> dict[str, str]:
    """Header strings: the recipe as JSON with the file's kept layers."""
    recipe = {**metadata["recipe"], "kept_layers": kept}
    return {"format": metadata["format"], "flux2_int8_version": metadata["flux2_int8_version"], "quantization_recipe": json.dumps(recipe, sort_keys=True)}


def _write_text_encoder(model: nn.Module, ranges: dict[str, float], recipe: Recipe, plan: QuantizePlan, metadata: dict[str, Any]) -> Path:
    state = text_encoder_state_dict(model, ranges, recipe)
    kept = [name for name in linear_names(model) if name not in ranges]
    metadata = {**metadata, "recipe": {**metadata["recipe"], "method": plan.encoder_method.spec}}
    return write_text_encoder(text_encoder_path(plan.out), state, model.config.to_json_string(), _with_kept(metadata, kept))


def _write_transformer(model: nn.Module, ranges: dict[str, float], plan: QuantizePlan, metadata: dict[str, Any], kept: tuple[str, ...], rotations: dict[str, int] | None = None) -> Path:
    state = quantized_state_dict(model, ranges if plan.activations == "static" else None, plan.recipe, rotations=rotations)
    if plan.output_format == "diffusers":
        return write_diffusers_folder(plan.out, state, dict(model.config), _with_kept(metadata, sorted(kept)))
    bfl_kept = sorted({mapped[0] if (mapped := map_diffusers_module(name)) else name for name in kept})
    write = write_comfy_checkpoint if plan.output_format == "comfy" else write_bfl_checkpoint
    return write(plan.out, state, _with_kept(metadata, bfl_kept))
