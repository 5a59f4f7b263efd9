"""The fields of an images request, each checked before any work, each refusal naming its field.

The same fields come as JSON (generations: typed values) or as multipart form fields
(edits: every value a string), so each reader takes either. A request that passes is
an `ImageRequest`: plain values the batcher can group by (`batch_key`).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..generate.requests import MAX_SEED, MIN_SIDE, SIDE_MULTIPLE, is_utf8_text
from .errors import ApiError, bad_field
from .settings import Limits

OUTPUT_FORMATS = ("png", "jpeg", "webp")
# Fields that change nothing here but that OpenAI clients send; taken and ignored.
_IGNORED = ("user",)
_COMMON = ("prompt", "model", "n", "size", "response_format", "output_format", "output_compression", "seed", "num_inference_steps", "guidance_scale", "lora", *_IGNORED)
GENERATION_FIELDS = _COMMON
EDIT_FIELDS = (*_COMMON, "image", "image[]", "mask")
# A random seed is drawn below this when none is given (any seed < 2**63 is taken).
_RANDOM_SEED_BOUND = 2**32
_MAX_LORA_SCALE = 8.0


@dataclass(frozen=True)
class ImageRequest:
    """A checked request: `n` images of `prompt` from seeds `seed`, `seed + 1`, ...

    `width`/`height` None: the model's native size (text-to-image) or the first
    reference's (edits). `steps`/`guidance` None: the model's defaults.
    `loras` are (name, scale) pairs from the server's LoRA folder.
    """

    prompt: str
    n: int
    seed: int
    width: int | None
    height: int | None
    steps: int | None
    guidance: float | None
    loras: tuple[tuple[str, float], ...]
    output_format: str
    output_compression: int | None
    seed_given: bool


def parse_request(values: Mapping[str, Any], allowed: Sequence[str], limits: Limits, model_ids: Sequence[str], loras: Mapping[str, Any], form: bool = False) -> ImageRequest:
    """Check every field of a generations or edits request (the images of an edit are read apart)."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise bad_field(unknown[0], f"unknown field; this endpoint takes {', '.join(f for f in allowed if f not in _IGNORED)}", code="unknown_parameter")
    reader = _Reader(values, form)
    prompt = _prompt(reader.string("prompt", required=True), limits)
    model = reader.string("model")
    if model is not None and model not in model_ids:
        raise bad_field("model", f"'{model}' is not served here; this server serves {', '.join(model_ids)} (GET /v1/models)", code="model_not_found")
    response_format = reader.string("response_format")
    if response_format not in (None, "b64_json"):
        if response_format == "url":
            raise bad_field("response_format", "'url' is not supported: this server keeps no images to link to; use 'b64_json' (the image in the response)", code="unsupported_value")
        raise bad_field("response_format", f"'{response_format}' is not a response format; use 'b64_json'")
    n = reader.integer("n", 1, 1, limits.max_n)
    output_format = (reader.string("output_format") or "png").lower()
    if output_format not in OUTPUT_FORMATS:
        raise bad_field("output_format", f"'{output_format}' is not one of {', '.join(OUTPUT_FORMATS)}")
    compression = reader.integer("output_compression", None, 0, 100)
    if compression is not None and output_format == "png":
        raise bad_field("output_compression", "applies to jpeg and webp only (png is lossless)")
    seed = reader.integer("seed", None, 0, MAX_SEED - n)
    width, height = _size(reader.string("size"), limits)
    steps = reader.integer("num_inference_steps", None, 1, limits.max_steps)
    guidance = reader.number("guidance_scale", 0.0, limits.max_guidance)
    chosen = _loras(reader.raw("lora"), loras, form)
    return ImageRequest(prompt, n, seed if seed is not None else secrets.randbelow(_RANDOM_SEED_BOUND), width, height, steps, guidance, chosen, output_format, compression, seed is not None)


def _prompt(prompt: str | None, limits: Limits) -> str:
    assert prompt is not None  # required
    if not prompt.strip():
        raise bad_field("prompt", "is empty")
    if not is_utf8_text(prompt):
        raise bad_field("prompt", "is not valid UTF-8 text (it holds a lone surrogate escape)")
    if len(prompt) > limits.max_prompt_chars:
        raise bad_field("prompt", f"is {len(prompt)} characters; this server takes at most {limits.max_prompt_chars}", code="too_long")
    return prompt


def _size(size: str | None, limits: Limits) -> tuple[int | None, int | None]:
    if size is None or size == "auto":
        return None, None
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise bad_field("size", f"'{size}' is not WIDTHxHEIGHT (e.g. '1024x1024') or 'auto'")
    width, height = int(parts[0]), int(parts[1])
    for side in (width, height):
        if side < MIN_SIDE or side % SIDE_MULTIPLE:
            raise bad_field("size", f"'{size}': each side must be a multiple of {SIDE_MULTIPLE} and at least {MIN_SIDE}")
    if width * height > limits.max_pixels:
        raise bad_field("size", f"'{size}' is {width * height} pixels; this server makes at most {limits.max_pixels}", code="too_large")
    return width, height


def _loras(value: Any, available: Mapping[str, Any], form: bool) -> tuple[tuple[str, float], ...]:
    """`lora`: a list of {"name", "scale"} objects or "NAME[:SCALE]" strings (a form: JSON, or comma-separated)."""
    if value is None:
        return ()
    if form and isinstance(value, str):
        text = value.strip()
        value = _json_or_none(text) if text.startswith(("[", "{")) else [part for part in text.split(",") if part.strip()]
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise bad_field("lora", "expected a list of {\"name\": NAME, \"scale\": SCALE} objects or \"NAME[:SCALE]\" strings")
    chosen: dict[str, float] = {}
    for entry in value:
        name, scale = _lora_entry(entry)
        if name not in available:
            offered = ", ".join(sorted(available)) or "none (the server was started without --lora-dir)"
            raise bad_field("lora", f"'{name}' is not one of this server's LoRAs: {offered}", code="lora_not_found")
        if name in chosen:
            raise bad_field("lora", f"'{name}' is given twice")
        chosen[name] = scale
    return tuple(sorted(chosen.items()))


def _lora_entry(entry: Any) -> tuple[str, float]:
    if isinstance(entry, str):
        name, _, tail = entry.strip().partition(":")
        scale: Any = 1.0
        if tail:
            try:
                scale = float(tail)
            except ValueError:
                raise bad_field("lora", f"'{entry}': the scale after ':' must be a number") from None
    elif isinstance(entry, dict) and set(entry) <= {"name", "scale"} and isinstance(entry.get("name"), str):
        name, scale = entry["name"], entry.get("scale", 1.0)
    else:
        raise bad_field("lora", f"{json.dumps(entry)[:80]}: expected {{\"name\": NAME, \"scale\": SCALE}} or \"NAME[:SCALE]\"")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or abs(scale) > _MAX_LORA_SCALE:
        raise bad_field("lora", f"'{name}': the scale must be a number within +-{_MAX_LORA_SCALE:g}")
    return name, float(scale)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise bad_field("lora", "is not valid JSON") from None


class _Reader:
    """Typed reads of request fields: JSON values as they are, form values from their text."""

    def __init__(self, values: Mapping[str, Any], form: bool):
        self.values = values
        self.form = form

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def string(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None:
            if required:
                raise bad_field(name, "is required", code="missing_required_parameter")
            return None
        if not isinstance(value, str):
            raise bad_field(name, f"expected a string, got {type(value).__name__}")
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.values.get(name)
        if value is None:
            return default
        if self.form and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_field(name, f"expected an integer, got {json.dumps(value)[:40]}")
        if not low <= value <= high:
            raise bad_field(name, f"{value} is out of range: expected {low} to {high}", code="out_of_range")
        return value

    def number(self, name: str, low: float, high: float) -> float | None:
        value = self.values.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad_field(name, f"expected a finite number, got {json.dumps(value)[:40]}")
        if not low <= value <= high:
            raise bad_field(name, f"{value:g} is out of range: expected {low:g} to {high:g}", code="out_of_range")
        return float(value)


def reject_mask(values: Mapping[str, Any]) -> None:
    """klein edits from the prompt and references alone; a mask would be silently ignored, so it is refused."""
    if values.get("mask") is not None:
        raise ApiError(400, "mask: not supported: FLUX.2 [klein] edits without masks (describe the change in the prompt)", param="mask", code="unsupported_parameter")
