"""The package's exceptions.

Every mistake a user can make (a bad file, a wrong option) raises a subclass of
`Flux2Int8Error`, so the CLI can print one readable line and exit 2 instead of a
traceback from deep inside torch.
"""

from __future__ import annotations

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
