"""The checked options of one quantize run, with no model and no torch: a mistake costs a second.

`flux2-int8 quantize` runs these checks before it imports torch; `quantize()` runs them
again (cheap) before it loads the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ..errors import Flux2Int8Error
from ..limits import SEED, check_side
from ..nano import NANO_SIZE, is_nano
from ..nano import is_nano_base as names_nano
from ..outputs import input_files
from .output import check_output
from .prompts import NANO_PROMPTS, PromptSet, load_prompts
from .recipe import CalibrationMethod, Recipe, parse_calibration, parse_rotation

OutputFormat = Literal["bfl", "comfy", "diffusers"]
STATIC = "static"
KLEIN_SIZE = 1024  # klein's calibration size: the size it is published and evaluated at


def text_encoder_path(out: str | Path) -> Path:
    """`q.safetensors` -> `q-text-encoder.safetensors`; a folder `q` -> `q-text-encoder.safetensors` beside it."""
    out = Path(out)
    stem = out.stem if out.suffix == ".safetensors" else out.name
    return out.with_name(f"{stem}-text-encoder.safetensors")


# quantize's default calibration of the transformer, chosen on the nano / nano-outliers table
# (docs/quantize.md, "The default"): what `--calibration auto` (or none given) means where it was measured.
DEFAULT_CALIBRATION = "percentile:99.99"


def resolve_calibration(calibration: str | None, activations: str, smoothquant: float | None, rotation: int | None) -> tuple[CalibrationMethod, CalibrationMethod]:
    """(the transformer's method, the text encoder's). An explicit method is both's.

    `auto` (or None) is `DEFAULT_CALIBRATION` for the transformer's plain static scales, and
    max where that was not measured or does not compose: SmoothQuant (it needs max), a rotation,
    and the text encoder (calibrated by max as before).
    """
    if calibration is not None and calibration.strip().lower() != "auto":
        method = parse_calibration(calibration)
        return method, method
    plain_static = activations == STATIC and smoothquant is None and rotation is None
    return parse_calibration(DEFAULT_CALIBRATION if plain_static else "max"), CalibrationMethod()


def check_alpha(alpha: float) -> float:
    if not 0 < alpha <= 1:
        raise Flux2Int8Error(f"--smoothquant {alpha}: alpha must be in (0, 1] (0.5 balances activations and weights)")
    return alpha


@dataclass(frozen=True)
class QuantizePlan:
    """The checked options of one run."""

    out: Path
    output_format: OutputFormat
    method: CalibrationMethod
    smoothquant: float | None
    recipe: Recipe
    text_encoder: bool
    prompts: PromptSet
    resolution: int
    seed: int
    activations: str = "static"
    rotation: int | None = None  # ConvRot group size (None: plain INT8)
    encoder_method: CalibrationMethod = CalibrationMethod()  # the text encoder's (`resolve_calibration`)

    @property
    def calibrates(self) -> bool:
        """Whether the pipeline must run: static scales, SmoothQuant and the text encoder need ranges."""
        return self.activations == "static" or self.smoothquant is not None or self.text_encoder


def plan_quantize(
    out: str | Path, output_format: str, calibration: str | None, smoothquant: float | None, quantize_modulation: bool,
    keep: Sequence[str], text_encoder: bool, prompts: str | Path | None, resolution: int, seed: int, activations: str = "static",
    inputs: Sequence[Path] = (), overwrite: bool = False, rotation: str = "off",
) -> QuantizePlan:
    """Check every option that needs no model, so mistakes surface before loading anything."""
    if output_format not in ("bfl", "comfy", "diffusers"):
        raise Flux2Int8Error(f"--format {output_format}: expected bfl (one .safetensors file), comfy (the same with ComfyUI's markers) or diffusers (a transformer folder)")
    activations = STATIC if activations == "auto" else activations  # auto loads a file's calibrated scales: make them
    if activations not in (STATIC, "dynamic"):
        raise Flux2Int8Error(f"--activations {activations}: expected auto or static (calibrated input_scale) or dynamic (per token at run time)")
    explicit = calibration is not None and calibration.strip().lower() != "auto"
    if explicit and activations == "dynamic" and smoothquant is None and not text_encoder:
        raise Flux2Int8Error(f"--calibration {calibration} with --activations dynamic: dynamic activations are scaled per token at run time, so nothing is calibrated; drop --calibration (or use --activations static)")
    group_size = parse_rotation(rotation)
    method, encoder_method = resolve_calibration(calibration, activations, smoothquant, group_size)
    if group_size is not None and smoothquant is not None and activations == "static":
        raise Flux2Int8Error("--smoothquant with --rotation convrot needs --activations dynamic: a static range of the smoothed, rotated input is not recorded (only per-channel maxima of the raw one)")
    if smoothquant is not None:
        check_alpha(smoothquant)
        if method.percentile is not None:
            raise Flux2Int8Error("--smoothquant needs --calibration max: the smoothed activations' distribution is not recorded, only their per-channel maxima")
    check_side(resolution, "--resolution")
    SEED.check(seed, "--seed")
    path = check_output(out, output_format, text_encoder_path(out) if text_encoder else None, inputs, overwrite)
    recipe = Recipe(quantize_modulation=quantize_modulation, extra_keep=tuple(keep))
    return QuantizePlan(path, cast(OutputFormat, output_format), method, smoothquant, recipe, text_encoder, load_prompts(prompts), resolution, seed, activations, group_size, encoder_method)


def plan_run(
    base: Any, out: str | Path, transformer: str | Path | None, resolution: int | None, prompts: str | Path | None,
    calibration: str | None, smoothquant: float | None, quantize_modulation: bool, keep: Sequence[str], text_encoder: bool,
    output_format: str, seed: int, activations: str, overwrite: bool, rotation: str = "off",
) -> QuantizePlan:
    """`quantize()`'s options checked, with a nano base's defaults (its prompts, 128 px) filled in."""
    nano = is_nano_model(base)
    if prompts is None and nano:
        prompts = NANO_PROMPTS  # nano knows only its grammar; calibrate on what it was trained on
    if resolution is None:
        resolution = NANO_SIZE if nano else KLEIN_SIZE
    inputs = input_files(local_folder(base), transformer, prompts)
    return plan_quantize(out, output_format, calibration, smoothquant, quantize_modulation, keep, text_encoder, prompts, resolution, seed, activations, inputs, overwrite, rotation)


def is_nano_model(base: Any) -> bool:
    """Whether the base is nano: by name, a loaded pipeline of nano's shape, or a folder whose transformer has it."""
    if not isinstance(base, (str, Path)):
        transformer = getattr(base, "transformer", None)
        return transformer is not None and is_nano(dict(transformer.config))
    if names_nano(str(base)):
        return True
    config = Path(base).expanduser() / "transformer" / "config.json"
    try:
        return config.is_file() and is_nano(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False  # load_pipeline says what is wrong with the folder


def local_folder(base: Any) -> Path | None:
    """The local folder the base's files come from, if any (a loaded pipeline's `name_or_path`): inputs no output may replace."""
    spec = base if isinstance(base, (str, Path)) else getattr(base, "name_or_path", None)
    path = Path(spec).expanduser() if spec else None
    return path if path is not None and path.is_dir() else None
