"""klein-nano: a trained FLUX.2 [klein] pipeline of 1.3 million parameters, shipped with the package.

It draws prompts of one small grammar (`two red circles on a blue background`) at
128x128 in 4 steps on any CPU, so the demo, the offline walk-throughs and the
INT8-vs-BF16 figures show a model that does its job. `--base nano` names it
wherever a base is taken. The facts every caller needs (where it lives, how it
samples) are here, free of torch and diffusers imports; the architecture is in
`nano.model`, its training in `nano.train`, the picture reader in `nano.score`,
nano-outliers in `nano.outliers`. May import: errors, variants, formats, outputs, channels,
tiny; never quantization or anything above it (quantization imports nano).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError

NANO_BASE = "nano"  # the name `--base` takes
# nano and its variant with planted activation outliers (`nano.outliers`): both sample the nano way.
NANO_BASES = (NANO_BASE, "nano-outliers")
NANO_SIZE = 128  # native width and height, in pixels
NANO_STEPS = 4  # distilled: trained at the pipeline's own four shifted sigmas
# The chat template wraps a prompt in about 14 tokens and a prompt has at most 7 words;
# 32 instead of klein's 512 keeps the transformer's text sequence (and its cost) small.
NANO_MAX_SEQUENCE_LENGTH = 32
# nano's transformer shape; a pipeline whose transformer has it samples the nano way.
NANO_SHAPE: dict[str, Any] = {
    "num_layers": 2,
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "in_channels": 32,
    "joint_attention_dim": 96,
}

# Single-stream blocks of a transformer trained from scratch; training can append more
# (`train.grow_single_blocks`), so the count is not part of the shape `is_nano` reads.
NANO_SINGLE_LAYERS = 3

_FOLDER = Path(__file__).parent / "weights"


def nano_folder() -> Path:
    """The shipped nano pipeline folder (diffusers layout, bf16 safetensors)."""
    if not (_FOLDER / "model_index.json").is_file():
        raise ConfigError(f"{_FOLDER}: the nano weights are missing from this install; reinstall flux2-int8")
    return _FOLDER


def is_nano_base(base: object) -> bool:
    """Whether `--base` names nano or nano-outliers (so: nano's prompts, 128 px)."""
    return str(base).strip().lower() in NANO_BASES


def is_nano(transformer_config: dict[str, Any]) -> bool:
    """Whether a transformer config has nano's shape (so: 128 px, 32 text tokens), at any depth of single blocks."""
    return all(transformer_config.get(key) == value for key, value in NANO_SHAPE.items())
