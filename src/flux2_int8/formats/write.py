"""Writing safetensors files so that a failed or interrupted write leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import Flux2Int8Error


def write_safetensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` to `path` through a temporary file in the same folder, then rename.

    The rename is atomic on POSIX, so the output path holds either nothing (or the
    previous file) or the complete new file, never a truncated one that a later
    load would half-read.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise Flux2Int8Error(f"cannot write {path}: folder {folder} does not exist")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    os.close(descriptor)
    try:
        contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(contiguous, temporary, metadata=metadata)
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
