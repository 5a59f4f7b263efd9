"""Checking the output path before calibration, so a typo costs a second, not a calibration run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import CheckpointError, Flux2Int8Error
from ..formats.checkpoint import DIFFUSERS_WEIGHTS
from ..formats.header import read_header
from ..formats.write import check_folder_writable
from ..outputs import claim_file, claim_folder


def check_output(out: str | Path, output_format: str, text_encoder_path: Path | None, inputs: Sequence[Path] = (), overwrite: bool = False) -> Path:
    """The output path, once it is known to be writable in the requested format and to replace none of `inputs`."""
    path = Path(out).expanduser()
    if output_format in ("bfl", "comfy"):
        if path.suffix != ".safetensors":
            raise Flux2Int8Error(f"--out {out}: a BFL checkpoint is one file; name it *.safetensors (or use --format diffusers for a folder)")
        if path.is_dir():
            raise Flux2Int8Error(f"--out {out}: is a folder; give a file name ending in .safetensors")
        claim_file(path, inputs, overwrite=overwrite, owned=is_previous_file)
    else:
        if path.suffix == ".safetensors":
            raise Flux2Int8Error(f"--out {out}: --format diffusers writes a folder; give a folder name, not *.safetensors")
        claim_folder(path, inputs, overwrite, owned=is_previous_export)
    check_folder_writable(path.parent, f"--out {path}")
    if text_encoder_path is not None:
        if text_encoder_path.is_dir():
            raise Flux2Int8Error(f"cannot write the text encoder to {text_encoder_path}: it is a folder")
        # A name the user never typed: an unrelated file of that name is refused, not replaced.
        claim_file(text_encoder_path, inputs, option="the text encoder output (named after --out)", overwrite=overwrite, owned=is_previous_file)
    return path


def is_previous_file(path: Path) -> bool:
    """A safetensors file this package wrote (its header names flux2-int8), which a rerun may replace."""
    try:
        metadata = read_header(path).metadata
    except (CheckpointError, OSError):
        return False
    return "flux2_int8_version" in metadata or metadata.get("producer", "").startswith("flux2-int8")


def is_previous_export(folder: Path) -> bool:
    """A transformer folder this package wrote: only its two files, and our quantization config.

    The names alone are not enough: a base pipeline's own `transformer/` folder holds
    exactly config.json and the weights file too.
    """
    if {p.name for p in folder.iterdir()} - {"config.json", DIFFUSERS_WEIGHTS}:
        return False
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    return isinstance(quantization, dict) and quantization.get("quant_method") == "flux2-int8"


