"""Checking the output path before calibration, so a typo costs a second, not a calibration run."""

from __future__ import annotations

from pathlib import Path

from ..errors import Flux2Int8Error
from ..formats.checkpoint import DIFFUSERS_WEIGHTS
from ..formats.write import check_folder_writable


def check_output(out: str | Path, output_format: str, text_encoder_path: Path | None) -> Path:
    """The output path, once it is known to be writable in the requested format."""
    path = Path(out).expanduser()
    if output_format in ("bfl", "comfy"):
        if path.suffix != ".safetensors":
            raise Flux2Int8Error(f"--out {out}: a BFL checkpoint is one file; name it *.safetensors (or use --format diffusers for a folder)")
        if path.is_dir():
            raise Flux2Int8Error(f"--out {out}: is a folder; give a file name ending in .safetensors")
    else:
        if path.suffix == ".safetensors":
            raise Flux2Int8Error(f"--out {out}: --format diffusers writes a folder; give a folder name, not *.safetensors")
        check_replaceable_folder(path)
    check_folder_writable(path.parent, f"--out {path}")
    if text_encoder_path is not None and text_encoder_path.is_dir():
        raise Flux2Int8Error(f"cannot write the text encoder to {text_encoder_path}: it is a folder")
    return path


def check_replaceable_folder(folder: Path) -> None:
    """Refuse to replace a folder that holds anything but a previous transformer export."""
    if folder.exists() and not (folder.is_dir() and {p.name for p in folder.iterdir()} <= {"config.json", DIFFUSERS_WEIGHTS}):
        raise Flux2Int8Error(f"--out {folder}: exists and is not a transformer folder written by flux2-int8; choose another path or remove it")


