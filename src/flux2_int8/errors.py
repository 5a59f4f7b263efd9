"""The package's exceptions.

Every mistake a user can make (a bad file, a wrong option) raises a subclass of
`Flux2Int8Error`, so the CLI can print one readable line and exit 2 instead of a
traceback from deep inside torch.
"""

from __future__ import annotations

import errno
from pathlib import Path


class Flux2Int8Error(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(Flux2Int8Error):
    """A checkpoint file is unreadable, incomplete or not what it claims to be.

    The message always names the file, and the tensor where one is at fault.
    """

    def __init__(self, path: str | Path, problem: str, tensor: str | None = None):
        self.path = str(path)
        self.tensor = tensor
        self.problem = problem
        where = f"{self.path}: tensor '{tensor}'" if tensor else self.path
        super().__init__(f"{where}: {problem}")


class UnsupportedFormatError(CheckpointError):
    """The file is readable but holds a format this package refuses to guess at."""


class ConfigError(Flux2Int8Error):
    """No transformer configuration fits, or the one given is malformed."""


# errno values meaning "the disk is full" (EDQUOT: a quota reached, same remedy).
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def os_error_message(error: OSError) -> str:
    """One line for an operating-system fault (permissions, a full disk, a vanished file), naming the file.

    These are not the package's mistakes nor the user's typos, but a traceback would
    hide the one fact the user needs: which file, and what to do about it.
    """
    where = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None) or "a file"
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in _DISK_FULL:
        return f"no space left while writing {where} ({reason}); free some space or write elsewhere, then run again (no partial file was kept)"
    if isinstance(error, PermissionError):
        return f"permission denied: {where} ({reason}); check the file's and folder's permissions"
    return f"{where}: {reason}"


class ChoiceError(ConfigError, ValueError):
    """An option given a value outside its choices (an INT8 backend name, say).

    Also a `ValueError`, which is what Python code that passes a bad value expects.
    """
