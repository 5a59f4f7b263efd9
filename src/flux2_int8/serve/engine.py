"""The model side of a server: one pipeline, loaded through the public API, run a batch at a time.

Everything here runs in the batcher's one worker thread (or once, at start). It owns
no model logic: `load_pipeline` loads, `apply_loras` adds the folder's LoRAs,
`generate_images` makes a batch; this module only picks the adapters a batch asks
for and encodes the pictures.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .settings import ModelSpec, lora_files

# PIL's save format and options per output_format.
_SAVE = {"png": ("PNG", {}), "jpeg": ("JPEG", {"quality": 90}), "webp": ("WEBP", {"quality": 90})}


@dataclass(frozen=True)
class BatchKey:
    """What images must share to be made in one pipeline call (all but prompt and seed)."""

    task: str  # "generate" or "edit"
    width: int | None
    height: int | None
    steps: int
    guidance: float
    loras: tuple[tuple[str, float], ...]
    references: str | None  # digest of the edit's reference images


@dataclass(frozen=True)
class Item:
    """One image to make, and how to encode it."""

    prompt: str
    seed: int
    output_format: str
    compression: int | None
    references: tuple[Image.Image, ...] = ()


@dataclass(frozen=True)
class Made:
    """One image made: encoded bytes (base64), its size, and the seconds of its batch's phases."""

    b64: str
    width: int
    height: int
    pipeline_seconds: float
    encode_seconds: float
    batch_size: int


class Engine:
    """A loaded pipeline and its LoRAs, with what `/v1/models` says about them."""

    def __init__(self, spec: ModelSpec):
        import torch

        from ..generate import apply_loras, load_pipeline, sampling_defaults
        from ..threads import fitted_thread_count, hidden_size

        self.spec = spec
        self.pipeline = _random_pipeline(spec) if spec.random_weights else load_pipeline(
            spec.base, transformer=spec.transformer, text_encoder=spec.text_encoder, device=spec.device, dtype=getattr(torch, spec.dtype),
            compile=spec.compile, local_files_only=spec.local_files_only, activations=spec.activations,  # type: ignore[arg-type]
        )
        self.pipeline.set_progress_bar_config(disable=True)
        # One thread for the small built-in models (their operations are too small to split), as the commands do.
        threads = fitted_thread_count(hidden_size(dict(self.pipeline.transformer.config)), spec.threads)
        if threads is not None:
            torch.set_num_threads(threads)
        self.defaults = sampling_defaults(self.pipeline)
        self.distilled = bool(self.pipeline.config.get("is_distilled", False))
        files = lora_files(spec.lora_dir)
        self.adapters: dict[str, str] = {}
        if files:
            names = apply_loras(self.pipeline, [str(path) for path in files.values()])
            self.adapters = dict(zip(files, names, strict=True))
            self.pipeline.disable_lora()
        self._active: tuple[tuple[str, float], ...] = ()

    @property
    def model_id(self) -> str:
        return model_id(self.spec)

    def describe(self) -> dict[str, Any]:
        """The `/v1/models` entry: variant, formats, activations, defaults, LoRAs."""
        from ..int8 import Fp8Linear, Int8Linear

        layers = list(self.pipeline.transformer.modules())
        int8 = [layer for layer in layers if isinstance(layer, Int8Linear)]
        fp8 = any(isinstance(layer, Fp8Linear) for layer in layers)
        text_int8 = any(isinstance(layer, Int8Linear) for layer in self.pipeline.text_encoder.modules())
        return {
            "id": self.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "flux2-int8",
            "base": self.spec.base,
            "transformer": "int8" if int8 else "fp8" if fp8 else str(self.pipeline.transformer.dtype).removeprefix("torch."),
            "text_encoder": "int8" if text_int8 else str(self.pipeline.text_encoder.dtype).removeprefix("torch."),
            "activations": sorted({layer.activations for layer in int8}) or None,
            "distilled": self.distilled,
            "default_steps": self.defaults.steps,
            "default_size": f"{self.defaults.size}x{self.defaults.size}" if self.defaults.size else None,
            "device": str(self.pipeline.transformer.device),
            "loras": sorted(self.adapters),
            "process_id": os.getpid(),  # which process (Ray Serve replica) answered
        }

    def resolve(self, steps: int | None, guidance: float | None) -> tuple[int, float]:
        """The steps and guidance a request runs with (a distilled model's guidance is its own)."""
        return steps or self.defaults.steps, self.defaults.guidance if guidance is None or self.distilled else guidance

    def native_size(self) -> int | None:
        return self.defaults.size

    def run(self, key: Hashable, items: Sequence[Item]) -> list[Made]:
        """Make one batch (all `items` share `key`) and encode each image."""
        from ..generate import generate_images

        assert isinstance(key, BatchKey)
        self._use_loras(key.loras)
        width, height = key.width, key.height
        if key.task == "generate" and width is None:
            width = height = self.defaults.size
        started = time.perf_counter()
        images = generate_images(self.pipeline, [item.prompt for item in items], [item.seed for item in items], items[0].references, key.steps, key.guidance, width, height)
        pipeline_seconds = time.perf_counter() - started
        encoded = [encode(image, item.output_format, item.compression) for image, item in zip(images, items, strict=True)]
        encode_seconds = time.perf_counter() - started - pipeline_seconds
        return [Made(data, image.width, image.height, pipeline_seconds, encode_seconds, len(items)) for data, image in zip(encoded, images, strict=True)]

    def warm(self) -> None:
        """One small image, so the first request does not pay for lazy initialisation (and a compile, if asked)."""
        size = self.defaults.size or 256
        self.run(BatchKey("generate", size, size, 1, self.defaults.guidance, (), None), [Item("warm-up", 0, "png", None)])

    def _use_loras(self, wanted: tuple[tuple[str, float], ...]) -> None:
        if wanted == self._active:
            return
        if wanted:
            self.pipeline.enable_lora()
            self.pipeline.set_adapters([self.adapters[name] for name, _ in wanted], adapter_weights=[scale for _, scale in wanted])
        else:
            self.pipeline.disable_lora()
        self._active = wanted


def _random_pipeline(spec: ModelSpec) -> Any:
    """The full-size variant with random INT8 weights (benchmarks), compiled as asked."""
    import torch

    from ..bench.random_pipeline import random_pipeline
    from ..generate import compile_transformer

    device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = random_pipeline(spec.base, "int8", device, getattr(torch, spec.dtype))
    compile_transformer(pipeline.transformer, spec.compile)
    return pipeline


def encode(image: Image.Image, output_format: str, compression: int | None) -> str:
    """The image as base64 text of a PNG, JPEG or WebP file (`compression` 0-100: lower keeps more)."""
    fmt, options = _SAVE[output_format]
    if compression is not None:
        options = {**options, "quality": 100 - compression}
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def model_id(spec: ModelSpec) -> str:
    """The name clients pass as `model`: the base, with the transformer file's name when one is given."""
    base = str(spec.base).rstrip("/").rsplit("/", 1)[-1]
    if spec.transformer is None:
        return base
    return f"{base}:{str(spec.transformer).rstrip('/').rsplit('/', 1)[-1].removesuffix('.safetensors')}"
