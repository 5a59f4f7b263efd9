"""Speed and memory of a klein transformer (and pipeline) in several weight formats.

Each run plan (a format; for INT8 weights, each requested `Int8Linear` backend; with and/or
without q/k/v fusion) builds or loads its own transformer (load time), applies its
options, then runs in each compile mode: eager ("off"), then compiled in place, whole
("full") or block by block ("regional", `generate.compilation`). A fresh model per plan
keeps plans independent: fusion cannot be undone and a compiled module cannot be switched
back to eager; a second compiled mode in one plan loads the transformer again.
Every finished run is handed to a callback at once (the command writes its report then),
and a `Budget` skips plans that would not fit in the time left.

Each mode measures its first call (compilation, for compiled), the per-step transformer
latency and, where a pipeline is at hand, one whole image split into its three phases:
text encoding (`encode_prompt`), denoising (the pipeline with `prompt_embeds` and
`output_type="latent"`) and VAE decoding (`vae.decode` + postprocessing to PIL).
Without a pipeline, image latency is steps x step latency, and says so.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import Flux2KleinPipeline
from torch import nn

from ..errors import ConfigError
from ..formats.checkpoint import open_checkpoint
from ..generate.compilation import COMPILE_MODES, compile_transformer
from ..int8 import backends
from ..int8.fusion import fuse_qkv_projections
from ..int8.linear import set_int8_backend
from ..loading import load_transformer
from ..quantization.one_forward import write_tiny_quantized
from ..nano import NANO_MAX_SEQUENCE_LENGTH, nano_folder
from ..tiny import BFL_CHECKPOINT_FILE, tiny_pipeline_cache
from ..variants import Architecture, get_variant
from .budget import Budget
from .random_pipeline import random_components
from .random_weights import check_format, random_transformer
from .timing import (
    DeviceClock,
    Stats,
    device_allocated_bytes,
    device_peak_bytes,
    host_rss_peak_bytes,
    reset_peak_memory,
    time_calls,
    time_once,
)

TINY = "tiny"
NANO = "nano"
BUILT_IN = (TINY, NANO)  # the models shipped with the package (tiny: random weights; nano: trained), 4 steps distilled
TEXT_TOKENS = 512  # Flux2KleinPipeline pads every prompt to 512 tokens
PIXELS_PER_TOKEN = 16  # VAE downsampling 8 x 2x2 patchify, for the real and the tiny VAE alike
DEFAULT_PROMPT = "A photo of a cat sitting on a green sofa next to a window, soft morning light"
INT8_BACKENDS = ("auto", *backends.BACKENDS)
FUSED_QKV_LABEL = "fused q/k/v"


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. `steps=None` takes the variant's default (4 distilled, 50 base)."""

    variant: str
    formats: tuple[str, ...] = ("bf16", "int8")
    compile_modes: tuple[str, ...] = ("off", "full")  # each of COMPILE_MODES: off, full, regional
    int8_backends: tuple[str, ...] = ("auto",)  # every INT8 run is repeated per backend
    activations: tuple[str, ...] = ("auto",)  # every INT8 run is repeated per activation mode (auto: static for random weights)
    fuse_qkv_modes: tuple[bool, ...] = (False,)  # every bf16/int8 run is repeated per mode
    resolution: int = 1024
    steps: int | None = None
    batch: int = 1
    repeats: int = 5
    warmup: int = 1
    random_weights: bool = False
    full_pipeline: bool = False
    transformer_path: str | None = None
    # The microbenchmark: the shapes of `variant` alone (else klein 4B and 9B together), and its
    # own compile modes (None: eager and compiled as `compile_modes` has them).
    microbench_variant_only: bool = False
    microbench_compile_modes: tuple[str, ...] | None = None
    # ConvRot group sizes the microbenchmark times beside the plain layer (None: plain INT8).
    microbench_rotations: tuple[int | None, ...] = (None,)
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    seed: int = 0
    prompt: str = DEFAULT_PROMPT
    dtype: str = "bfloat16"  # compute dtype of activations and float layers (--dtype)

    @property
    def distilled(self) -> bool:
        return True if self.variant in BUILT_IN else get_variant(self.variant).distilled

    @property
    def num_steps(self) -> int:
        return self.steps if self.steps is not None else (4 if self.variant in BUILT_IN else get_variant(self.variant).default_steps)

    @property
    def guidance_scale(self) -> float:
        return 1.0 if self.variant in BUILT_IN else get_variant(self.variant).default_guidance

    @property
    def image_tokens(self) -> int:
        return (self.resolution // PIXELS_PER_TOKEN) ** 2

    @property
    def text_tokens(self) -> int:
        """The prompt length the pipeline pads to: klein's 512, nano's 32 (as generate pads)."""
        return NANO_MAX_SEQUENCE_LENGTH if self.variant == NANO else TEXT_TOKENS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "num_steps": self.num_steps, "image_tokens": self.image_tokens, "text_tokens": self.text_tokens}


@dataclass(frozen=True)
class ImageTiming:
    """Seconds per image batch; the phases are None when the image latency is estimated."""

    total: Stats
    measured: bool
    text_encoding: Stats | None = None
    denoising: Stats | None = None
    vae_decode: Stats | None = None


@dataclass(frozen=True)
class RunPlan:
    """One transformer to build and time: a format, the INT8 backend forced on it, q/k/v fusion."""

    format: str
    int8_backend: str | None  # None: the format has no Int8Linear layers
    fused_qkv: bool
    label: str  # the row name in reports: "int8 (triton, fused q/k/v)"
    activations: str = "auto"  # how Int8Linear layers quantize their input: auto, static or dynamic


@dataclass
class RunResult:
    """One run plan in one compile mode."""

    format: str
    compile: str  # off, full or regional
    load_s: float
    first_call_s: float
    step: Stats
    image: ImageTiming
    images_per_s: float
    weights_bytes: int | None
    peak_step_bytes: int | None
    peak_image_bytes: int | None
    host_rss_peak_bytes: int
    host_peak_is_per_run: bool
    int8_backend: str | None = None
    fused_qkv: bool = False
    activations: str = "auto"
    fused_attentions: int = 0  # attentions `fuse_qkv_projections` fused in this model
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = run_label(self.format, self.int8_backend if self.int8_backend != "auto" else None, self.fused_qkv)

    @property
    def compiled(self) -> bool:
        return self.compile != "off"

    @property
    def noisy(self) -> bool:
        """Whether the step or the image timing spreads wider than half its median (`Stats.noisy`)."""
        return self.step.noisy or self.image.total.noisy

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "compiled": self.compiled, "noisy": self.noisy}

    def progress_line(self, settings: BenchSettings) -> str:
        """'klein-9b int8: eager: 1.234 s/img, step 301.2 ms (min-max 299.0-310.4)', marked when noisy."""
        mode = "eager" if self.compile == "off" else f"{self.compile} compile"
        step = self.step
        noisy = ", NOISY: spread wider than half the median" if self.noisy else ""
        estimated = "" if self.image.measured else " (estimated)"
        return (
            f"{settings.variant} {self.label}: {mode}: {self.image.total.median_s / settings.batch:.3f} s/img{estimated}, "
            f"step {step.median_s * 1e3:.1f} ms (min-max {step.min_s * 1e3:.1f}-{step.max_s * 1e3:.1f}){noisy}"
        )


@dataclass
class BenchResult:
    settings: BenchSettings
    runs: list[RunResult] = field(default_factory=list)
    components_load_s: float | None = None
    components_bytes: int | None = None  # device memory of text encoder + VAE (CUDA, --full-pipeline or tiny)
    source: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"what": plan label, "why": reason}


PLAN_KIND = "transformer plan"  # a Budget kind


def run_benchmark(
    settings: BenchSettings,
    progress: Callable[[str], None] = lambda message: None,
    budget: Budget | None = None,
    on_update: Callable[[BenchResult], None] = lambda result: None,
) -> BenchResult:
    """Measure every plan in `settings`, in every compile mode, and return the results.

    `on_update` gets the result so far after every finished run and skipped plan; `budget`
    skips a plan when the time left is less than the longest plan so far took.
    """
    check_settings(settings)
    budget = budget or Budget()
    device = torch.device(settings.device)
    with tempfile.TemporaryDirectory(prefix="flux2-int8-bench-") as workdir:
        source = _make_source(settings, device, Path(workdir))
        result = BenchResult(settings=settings, source=source.description)
        before = device_allocated_bytes(device)
        result.components_load_s = source.load_components()
        if before is not None and result.components_load_s is not None:
            result.components_bytes = device_allocated_bytes(device) - before  # type: ignore[operator]
        on_update(result)
        plans = run_plans(source.formats(settings.formats), settings)
        for index, plan in enumerate(plans, 1):
            counted = _counted(progress, f"[{index}/{len(plans)}] ")
            reason = budget.skip_reason(PLAN_KIND)
            if reason is not None:
                counted(f"{settings.variant} {plan.label}: skipped, {reason}")
                result.skipped.append({"what": plan.label, "why": reason})
                on_update(result)
                continue
            counted(f"{settings.variant} {plan.label}: loading")
            with budget.timed(PLAN_KIND):
                _bench_plan(source, plan, settings, device, counted, lambda run: (result.runs.append(run), counted(run.progress_line(settings)), on_update(result)))
    return result


def _counted(progress: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    """`progress` with every line of one plan starting '[k/n] '."""
    return lambda message: progress(prefix + message)


def is_int8_format(fmt: str) -> bool:
    """'int8' and the checkpoint formats holding Int8Linear layers ('bfl-int8', 'modelopt-int8', ...)."""
    return fmt == "int8" or fmt.endswith("-int8")


def run_label(fmt: str, int8_backend: str | None, fused_qkv: bool, activations: str | None = None) -> str:
    """'int8', 'int8 (int_mm)', 'bf16 (fused q/k/v)', 'int8 (triton, dynamic, fused q/k/v)'."""
    qualifiers = [int8_backend] if int8_backend else []
    qualifiers += [activations] if activations else []
    qualifiers += [FUSED_QKV_LABEL] if fused_qkv else []
    return f"{fmt} ({', '.join(qualifiers)})" if qualifiers else fmt


def run_plans(formats: tuple[str, ...], settings: BenchSettings) -> list[RunPlan]:
    """Every (format, INT8 backend, fusion) to time, in report order: each backend's unfused
    and fused runs side by side. The backend is named in labels unless only 'auto' was asked for."""
    name_backend = settings.int8_backends != ("auto",)
    name_activations = settings.activations != ("auto",)
    plans = []
    for fmt in formats:
        int8 = is_int8_format(fmt)
        for backend in settings.int8_backends if int8 else (None,):
            for activations in settings.activations if int8 else ("auto",):
                for fused in settings.fuse_qkv_modes:
                    label = run_label(fmt, backend if name_backend else None, fused, activations if int8 and name_activations else None)
                    plans.append(RunPlan(fmt, backend, fused, label, activations))
    return plans


def configure_transformer(model: nn.Module, int8_backend: str | None, fuse_qkv: bool) -> int:
    """Apply a plan's options to a freshly loaded transformer, in place: fuse q/k/v
    (`fuse_qkv_projections`), then force `int8_backend` on every Int8Linear, fused ones
    included. Returns the number of attentions fused (0 when `fuse_qkv` is False)."""
    fused = fuse_qkv_projections(model) if fuse_qkv else 0
    if int8_backend is not None:
        set_int8_backend(model, int8_backend)
    return fused


def check_settings(settings: BenchSettings) -> None:
    """Raise `ConfigError` for any option that cannot work, before anything slow starts."""
    if settings.variant not in BUILT_IN:
        get_variant(settings.variant)
        if not (settings.random_weights or settings.transformer_path):
            raise ConfigError(f"variant '{settings.variant}': pass --random-weights (no download) or --transformer PATH")
    elif settings.transformer_path:
        raise ConfigError(f"--transformer is for the klein variants; '{settings.variant}' always uses its built-in pipeline")
    if settings.random_weights and settings.transformer_path:
        raise ConfigError("--random-weights and --transformer exclude each other: choose one source of weights")
    for fmt in settings.formats:
        check_format(fmt)
    # Headers only: a bad path fails now, not after the first format.
    formats = (open_checkpoint(settings.transformer_path).format,) if settings.transformer_path else settings.formats
    _check_run_options(settings, formats)
    if settings.resolution <= 0 or settings.resolution % PIXELS_PER_TOKEN:
        raise ConfigError(f"--resolution {settings.resolution}: expected a positive multiple of {PIXELS_PER_TOKEN}")
    for option, value in (("--batch", settings.batch), ("--repeats", settings.repeats), ("--steps", settings.num_steps)):
        if value < 1:
            raise ConfigError(f"{option} {value}: expected at least 1")
    if settings.warmup < 0:
        raise ConfigError(f"--warmup {settings.warmup}: expected 0 or more")
    if not settings.compile_modes or any(mode not in COMPILE_MODES for mode in settings.compile_modes):
        raise ConfigError(f"--compile {','.join(settings.compile_modes)}: expected a comma-separated list of {', '.join(COMPILE_MODES)}")
    if torch.device(settings.device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {settings.device}: CUDA is not available here")


def _check_run_options(settings: BenchSettings, formats: tuple[str, ...]) -> None:
    """--int8-backends and --fuse-qkv against the formats that will run."""
    listed = ",".join(settings.int8_backends)
    if not settings.int8_backends:
        raise ConfigError(f"--int8-backends: expected a comma-separated list of {', '.join(INT8_BACKENDS)}")
    for backend in settings.int8_backends:
        if backend not in INT8_BACKENDS:
            raise ConfigError(f"--int8-backends {listed}: unknown INT8 backend '{backend}', expected one of {', '.join(INT8_BACKENDS)}")
        if backend.startswith("triton") and torch.device(settings.device).type == "cuda" and not backends.TRITON_INSTALLED:
            raise ConfigError(f"--int8-backends {listed}: '{backend}' on CUDA needs the triton package, which is not installed: pip install 'flux2-int8[gpu]'")
    if settings.int8_backends != ("auto",) and not any(is_int8_format(fmt) for fmt in formats):
        raise ConfigError(f"--int8-backends {listed}: no int8 weights to run them on (formats: {', '.join(formats)}); add int8 to --formats")
    if not settings.fuse_qkv_modes:
        raise ConfigError("--fuse-qkv: expected off, on, or off,on")
    fp8 = [fmt for fmt in formats if fmt == "fp8" or fmt.endswith("-fp8")]
    if True in settings.fuse_qkv_modes and fp8:
        raise ConfigError(f"--fuse-qkv on: q/k/v fusion is for bf16 and int8 weights, not {fp8[0]} (Fp8Linear); drop fp8 from --formats or use --fuse-qkv off")


@dataclass
class _Loaded:
    """A plan's transformer, configured, with what timing it needs."""

    model: nn.Module
    pipe: Flux2KleinPipeline | None
    inputs: dict[str, Any]
    load_s: float
    weights_bytes: int | None
    fused_attentions: int


def _load(source: _Source, plan: RunPlan, settings: BenchSettings, device: torch.device) -> _Loaded:
    """Load the plan's transformer and apply its options.

    `weights` is measured after fusion: the fused model holds the same bytes, the separate
    q/k/v layers having been freed.
    """
    source.prepare(plan.format)
    baseline = device_allocated_bytes(device)
    load_s, model = time_once(lambda: source.transformer(plan.format, plan.activations), device)
    fused_attentions = configure_transformer(model, plan.int8_backend, plan.fused_qkv)
    weights = None if baseline is None else device_allocated_bytes(device) - baseline  # type: ignore[operator]
    return _Loaded(model, source.pipeline(model), transformer_inputs(model.config, settings, device, model.dtype), load_s, weights, fused_attentions)


def _bench_plan(source: _Source, plan: RunPlan, settings: BenchSettings, device: torch.device, progress: Callable[[str], None], finished: Callable[[RunResult], Any]) -> None:
    """Run every compile mode on the plan's transformer, handing each RunResult to `finished`.

    Eager and the first compiled mode share one load (compiled in place after eager); a
    further compiled mode loads the transformer again, since a compiled model cannot be
    un-compiled. Everything is freed at the end.
    """
    loaded: _Loaded | None = None
    compiled_already = False
    plan_fields = {"int8_backend": plan.int8_backend, "fused_qkv": plan.fused_qkv, "activations": plan.activations, "label": plan.label}
    try:
        for mode in settings.compile_modes:
            if loaded is None or compiled_already:
                loaded = None
                _free(device)
                loaded = _load(source, plan, settings, device)
                compiled_already = False
            if mode != "off":
                compile_transformer(loaded.model, mode)
                compiled_already = True
            progress(f"{settings.variant} {plan.label}: {'eager' if mode == 'off' else mode + ' compile'}")
            measured = _measure(loaded.model, loaded.pipe, loaded.inputs, settings, device)
            finished(RunResult(format=plan.format, compile=mode, load_s=loaded.load_s, weights_bytes=loaded.weights_bytes, fused_attentions=loaded.fused_attentions, **plan_fields, **measured))
    finally:
        del loaded
        _free(device)


def _measure(model: nn.Module, pipe: Flux2KleinPipeline | None, inputs: dict[str, Any], settings: BenchSettings, device: torch.device) -> dict[str, Any]:
    """The timed fields of one RunResult: first call, step, image, memory peaks."""
    per_run = reset_peak_memory(device)
    # no_grad, as the pipeline's own __call__: under inference_mode the pipeline's tensors would
    # differ in dispatch keys from `inputs`, and a compiled model would recompile for them.
    with torch.no_grad():
        first_call_s, _ = time_once(lambda: model(**inputs), device)
        step = time_calls(lambda: model(**inputs), device, settings.repeats, settings.warmup)
        peak_step = device_peak_bytes(device)
        if pipe is None:
            calls_per_step = 1 if settings.distilled else 2  # CFG runs the transformer twice per step
            image, peak_image = ImageTiming(total=step.scaled(settings.num_steps * calls_per_step), measured=False), None
        else:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            image, peak_image = time_images(pipe, settings, device), device_peak_bytes(device)
    return {
        "first_call_s": first_call_s,
        "step": step,
        "image": image,
        "images_per_s": settings.batch / image.total.median_s,
        "peak_step_bytes": peak_step,
        "peak_image_bytes": peak_image,
        "host_rss_peak_bytes": host_rss_peak_bytes(),
        "host_peak_is_per_run": per_run,
    }


def transformer_inputs(config: Any, settings: BenchSettings, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """One denoising step's transformer inputs, built with the pipeline's own helpers so that
    shapes, dtypes and strides match the pipeline's calls (a compiled model then never recompiles).

    hidden_states [B, (res/16)^2, in_channels], encoder_hidden_states [B, 512, joint_attention_dim],
    timestep [B], img_ids [B, (res/16)^2, 4], txt_ids [B, 512, 4].
    """
    generator = torch.Generator().manual_seed(settings.seed)
    side = settings.resolution // PIXELS_PER_TOKEN
    latents = torch.randn(settings.batch, config.in_channels, side, side, generator=generator).to(device, dtype)
    embeds = torch.randn(settings.batch, settings.text_tokens, config.joint_attention_dim, generator=generator).to(device, dtype)
    return {
        "hidden_states": Flux2KleinPipeline._pack_latents(latents),
        "encoder_hidden_states": embeds,
        "timestep": torch.full((settings.batch,), 0.5, dtype=dtype, device=device),
        "img_ids": Flux2KleinPipeline._prepare_latent_ids(latents).to(device),
        "txt_ids": Flux2KleinPipeline._prepare_text_ids(embeds).to(device),
        "guidance": None,
        "joint_attention_kwargs": None,
        "return_dict": False,
    }


def time_images(pipe: Flux2KleinPipeline, settings: BenchSettings, device: torch.device) -> ImageTiming:
    """Whole images, phase by phase, `settings.repeats` times after `settings.warmup` (at least one)."""
    clock = DeviceClock(device)
    for _ in range(max(settings.warmup, 1)):
        _image_phases(pipe, settings, device, clock)
    clock.synchronize()
    marks = [_image_phases(pipe, settings, device, clock) for _ in range(settings.repeats)]
    clock.synchronize()
    phases = [[clock.seconds(m[i], m[i + 1]) for i in range(3)] for m in marks]
    return ImageTiming(
        total=Stats.from_samples([sum(p) for p in phases]),
        measured=True,
        text_encoding=Stats.from_samples([p[0] for p in phases]),
        denoising=Stats.from_samples([p[1] for p in phases]),
        vae_decode=Stats.from_samples([p[2] for p in phases]),
    )


def _image_phases(pipe: Flux2KleinPipeline, settings: BenchSettings, device: torch.device, clock: DeviceClock) -> list[Any]:
    """Four marks around text encoding, denoising and VAE decoding of one image batch."""
    prompts = [settings.prompt] * settings.batch
    marks = [clock.mark()]
    embeds, _ = pipe.encode_prompt(prompt=prompts, device=device, max_sequence_length=settings.text_tokens)
    negative = pipe.encode_prompt(prompt=[""] * settings.batch, device=device, max_sequence_length=settings.text_tokens)[0] if not settings.distilled else None
    marks.append(clock.mark())
    latents = pipe(
        prompt_embeds=embeds,
        negative_prompt_embeds=negative,
        height=settings.resolution,
        width=settings.resolution,
        num_inference_steps=settings.num_steps,
        guidance_scale=settings.guidance_scale,
        generator=torch.Generator(device=device).manual_seed(settings.seed),
        output_type="latent",
        return_dict=False,
    )[0]
    marks.append(clock.mark())
    decoded = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
    pipe.image_processor.postprocess(decoded, output_type="pil")
    marks.append(clock.mark())
    return marks


def _free(device: torch.device) -> None:
    """Drop compiled graphs and cached blocks so the next format starts from the same state."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class _Source:
    """Where transformers and the other pipeline components come from."""

    description = ""

    def __init__(self, settings: BenchSettings, device: torch.device, workdir: Path):
        self.settings, self.device, self.workdir = settings, device, workdir
        self.dtype = getattr(torch, settings.dtype)
        self.components: dict[str, Any] | None = None

    def formats(self, requested: tuple[str, ...]) -> tuple[str, ...]:
        return requested

    def load_components(self) -> float | None:
        """Build text encoder, VAE, tokenizer and scheduler once; seconds taken, or None without a pipeline."""
        return None

    def prepare(self, fmt: str) -> None:
        """Untimed work before loading `fmt` (writing a test file)."""

    def transformer(self, fmt: str, activations: str = "auto") -> nn.Module:
        raise NotImplementedError

    def pipeline(self, transformer: nn.Module) -> Flux2KleinPipeline | None:
        if self.components is None:
            return None
        pipe = Flux2KleinPipeline(**self.components, transformer=transformer, is_distilled=self.settings.distilled)
        pipe.set_progress_bar_config(disable=True)
        return pipe


class _BuiltInSource(_Source):
    """A built-in pipeline (the cached tiny one, or nano); quantized transformers are written as BFL files and loaded back."""

    def __init__(self, settings: BenchSettings, device: torch.device, workdir: Path):
        super().__init__(settings, device, workdir)
        if settings.variant == NANO:
            self.folder = nano_folder()
            self.description = f"nano pipeline {self.folder}"
            self.files = {"bf16": self.folder / "transformer"}
        else:
            self.folder = tiny_pipeline_cache(seed=settings.seed)
            self.description = f"tiny random pipeline {self.folder}"
            self.files = {"bf16": self.folder / BFL_CHECKPOINT_FILE}

    def load_components(self) -> float:
        def load() -> dict[str, Any]:
            pipe = Flux2KleinPipeline.from_pretrained(self.folder, transformer=None, local_files_only=True, use_safetensors=True, dtype=self.dtype)
            return {name: _to_device(part, self.device) for name, part in pipe.components.items() if name != "transformer"}

        seconds, self.components = time_once(load, self.device)
        return seconds

    def prepare(self, fmt: str) -> None:
        if fmt not in self.files:
            self.files[fmt] = write_tiny_quantized(self.folder, fmt, self.workdir / f"{self.settings.variant}-{fmt}.safetensors")

    def transformer(self, fmt: str, activations: str = "auto") -> nn.Module:
        return load_transformer(self.files[fmt], device=self.device, dtype=self.dtype, activations=activations)  # type: ignore[arg-type]


class _KleinSource(_Source):
    """Full-size klein: random weights in each format, or one checkpoint file; random text encoder and VAE."""

    def __init__(self, settings: BenchSettings, device: torch.device, workdir: Path):
        super().__init__(settings, device, workdir)
        self.architecture: Architecture = get_variant(settings.variant).architecture
        path = settings.transformer_path
        self.description = f"checkpoint {path}" if path else f"random {settings.variant} weights built on {device}"

    def formats(self, requested: tuple[str, ...]) -> tuple[str, ...]:
        if self.settings.transformer_path is None:
            return requested
        return (open_checkpoint(self.settings.transformer_path).format,)

    def load_components(self) -> float | None:
        if not self.settings.full_pipeline:
            return None

        def build() -> dict[str, Any]:
            return random_components(self.architecture, self.device, self.dtype, seed=self.settings.seed)

        seconds, self.components = time_once(build, self.device)
        return seconds

    def transformer(self, fmt: str, activations: str = "auto") -> nn.Module:
        if self.settings.transformer_path:
            return load_transformer(self.settings.transformer_path, config=self.settings.variant, device=self.device, dtype=self.dtype, activations=activations)  # type: ignore[arg-type]
        return random_transformer(self.architecture, fmt, self.device, self.dtype, seed=self.settings.seed, activations="dynamic" if activations == "dynamic" else "static")


def _make_source(settings: BenchSettings, device: torch.device, workdir: Path) -> _Source:
    return _BuiltInSource(settings, device, workdir) if settings.variant in BUILT_IN else _KleinSource(settings, device, workdir)


def _to_device(part: Any, device: torch.device) -> Any:
    return part.to(device) if isinstance(part, nn.Module) else part
