"""Writing safetensors files so that a failed or interrupted write leaves nothing behind."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from ..errors import Flux2Int8Error
from ..version import __version__
from .keys import diffusers_to_bfl

if TYPE_CHECKING:  # torch is imported where tensors are written: the folder checks here run before a command imports it
    import torch


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
        _save_file(contiguous, temporary, metadata, path)
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors' `save_file`, imported at the first write: checking a folder here needs no torch."""
    from safetensors.torch import save_file as save

    save(tensors, filename, metadata=metadata)


def _save_file(tensors: dict[str, torch.Tensor], temporary: str, metadata: dict[str, str] | None, path: Path) -> None:
    """safetensors' `save_file`, its I/O failures re-raised as the `OSError` they are (a full disk: errno 28), naming `path`."""
    try:
        save_file(tensors, temporary, metadata=metadata)
    except SafetensorError as error:
        code = re.search(r"os error (\d+)", str(error))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_folder_writable(folder: str | Path, what: str, error: type[Flux2Int8Error] = Flux2Int8Error) -> None:
    """Refuse early, creating nothing, unless `folder` (or its nearest existing ancestor,
    where missing folders would be made at write time) is a folder we can write in.

    `what` starts the message (e.g. "--out q.safetensors"); `error` is the caller's class.
    """
    existing = Path(folder).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{what}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as problem:
        raise error(f"{what}: folder {existing} is not writable ({problem.strerror})") from None


def write_bfl_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write a diffusers-named state dict as one BFL single-file checkpoint (official key names)."""
    header = {"producer": f"flux2-int8 {__version__}", **(metadata or {})}
    return write_safetensors_atomic(path, diffusers_to_bfl(state_dict), header)
