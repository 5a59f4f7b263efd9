"""nano-outliers: nano with planted activation outliers, the function of the model unchanged.

Real DiTs have a few input channels of the attention-output and feed-forward-down
projections tens of times wider than the rest; per-tensor static activation scales suffer
most from them, and ConvRot exists for them. nano's activations are benign, so calibration
choices made on it say little about such models. Here, in every block, a few channels of
those inputs are made `OUTLIER_SCALE` times wider without changing what the model computes:

- the rows of the value projection (`to_v` and `add_v_proj`; the v rows of single blocks'
  `to_qkv_mlp_proj`) that make channel j are multiplied by s, and column j of the attention
  output projection(s) divided by s (attention output channel j is linear in v_j);
- the rows of the feed-forward *value* half that make channel j (SwiGLU computes
  silu(gate) * value, linear in value) are multiplied by s, and column j of the down
  projection divided by s; single blocks' fused layers likewise.

These are the foldable pairs SmoothQuant smooths (`channels.foldable_groups`), folded
the other way, on the channels of typical range (measured on two nano generations), with s
a power of 2 that puts each at about 50x the median channel's range. A power of 2 keeps
every scaled weight and every product exact in bf16 and float32: the planted model
computes what nano does, bit for bit (bar float32 sums reassociated by the kernels).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..channels import ChannelRangeObserver, fold, foldable_consumers, foldable_groups
from . import nano_folder

NANO_OUTLIERS_BASE = "nano-outliers"
TARGET_RATIO = 50.0  # a planted channel's range over the median channel's, before rounding s to a power of 2
OUTLIER_CHANNELS = 2  # planted channels per smoothed part (attention output, feed-forward value)
# Prompts whose generation measures nano's channel ranges, so the planted ones land near the target.
_MEASURE_PROMPTS = (
    "two red circles on a blue background",
    "one green square on a yellow background",
    "three white triangles on a black background",
    "a blue circle and a red square on a green background",
)
_VERSION = 3


def plant_outliers(model: nn.Module, channel_amax: dict[str, torch.Tensor], target_ratio: float = TARGET_RATIO, channels: int = OUTLIER_CHANNELS) -> dict[str, dict[int, float]]:
    """Plant outliers in a `Flux2Transformer2DModel` in place; returns each consumer's planted channels and their s.

    `channel_amax` holds each consumer's measured max |input| per channel
    (`channels.ChannelRangeObserver`). In each part the channels closest to the median range
    are chosen and scaled by s = the power of 2 nearest `target_ratio` x median / range, so each lands at
    target_ratio / sqrt(2) to target_ratio x sqrt(2) times the median channel's range.
    """
    planted: dict[str, dict[int, float]] = {}
    for group in foldable_groups(model):
        ranges = torch.stack([channel_amax[name].float().cpu() for name in group.consumers]).amax(dim=0)
        median = ranges.median()
        factors = torch.ones_like(ranges)
        for start, stop in sorted({p.part.indices(ranges.numel())[:2] for p in group.producers}):
            order = torch.argsort((ranges[start:stop] - median).abs())
            for index in order[:channels].tolist():
                power = torch.round(torch.log2(target_ratio * median / ranges[start + index].clamp_min(1e-12)))
                factors[start + index] = 2.0 ** -float(power)
        fold(model, group, factors)  # consumer columns x 1/s, producer rows x s
        for name in group.consumers:
            planted[name] = {int(j): float(1 / factors[j]) for j in torch.nonzero(factors != 1).flatten()}
    return planted


def measure_channel_ranges(pipe, names: list[str]) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Max |input| per channel of `names` over nano generations of `_MEASURE_PROMPTS` (128 px, 4 steps)."""
    from . import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, NANO_STEPS

    observer = ChannelRangeObserver(pipe.transformer, names)
    with observer, torch.no_grad():
        for seed, prompt in enumerate(_MEASURE_PROMPTS):
            pipe(prompt=prompt, height=NANO_SIZE, width=NANO_SIZE, num_inference_steps=NANO_STEPS, max_sequence_length=NANO_MAX_SEQUENCE_LENGTH,
                 generator=torch.Generator().manual_seed(seed), output_type="latent")
    return observer.channel_amax


def nano_outliers_folder() -> Path:
    """nano with planted outliers, as a pipeline folder built once into the cache (`$FLUX2_INT8_CACHE`)."""
    from diffusers import Flux2KleinPipeline

    root = Path(os.environ.get("FLUX2_INT8_CACHE") or Path.home() / ".cache" / "flux2_int8")
    source = nano_folder()
    marker = {"version": _VERSION, "target_ratio": TARGET_RATIO, "channels": OUTLIER_CHANNELS, "nano": _weights_stamp(source)}
    target = root / f"nano-outliers-v{_VERSION}"
    if _read_marker(target) == marker:
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("transformer"))
        pipe = Flux2KleinPipeline.from_pretrained(source, torch_dtype=torch.float32, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        ranges = measure_channel_ranges(pipe, foldable_consumers(pipe.transformer))
        planted = plant_outliers(pipe.transformer, ranges)
        pipe.transformer.to(torch.bfloat16).save_pretrained(staging / "transformer")
        (staging / "planted_outliers.json").write_text(json.dumps(planted, indent=1))
        (staging / "nano_outliers.json").write_text(json.dumps(marker))
        if _read_marker(target) != marker:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _weights_stamp(folder: Path) -> list[int]:
    weights = sorted((folder / "transformer").glob("*.safetensors"))
    return [w.stat().st_size for w in weights]


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "nano_outliers.json").read_text())
    except (OSError, ValueError):
        return None
