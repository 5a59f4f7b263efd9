"""Reading a user's text and JSON inputs with bounds: regular files only, so big, so many lines.

A path a user gives can name anything: `generate --prompts /dev/zero` read until memory
ran out, a FIFO blocked forever, and `inspect` called a FIFO "no such file". Every text
input (prompts files, eval suites, quantize prompt sets, configs and indexes) is read
here: a device, FIFO, socket or folder is refused by name before it is opened, the size
is checked from `stat` and again while reading (a file that grows), and the line count is
bounded. docs/reliability.md states the limits.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import Flux2Int8Error

MAX_TEXT_BYTES = 16 * 1024 * 1024  # a prompts file or suite of 100,000 lines of 160 characters
MAX_TEXT_LINES = 100_000
MAX_JSON_BYTES = 64 * 1024 * 1024  # configs and weight indexes are kilobytes; generous for odd ones
_KINDS = (
    (stat.S_ISDIR, "is a folder, not a file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


class InputFileError(Flux2Int8Error):
    """A text input that is not a regular file, is too big, has too many lines, or is not UTF-8."""


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a regular file ("no such file", "is a named pipe ..."), or None.

    Symbolic links are followed (a link to a prompts file is fine); nothing is opened,
    so a FIFO never blocks the caller.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a part of the path is a file, not a folder)"
    except PermissionError as error:
        return f"permission denied ({error.strerror})"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    for test, problem in _KINDS:
        if test(mode):
            return problem
    return None if stat.S_ISREG(mode) else "is not a regular file"


def read_bounded_bytes(
    path: str | Path,
    what: str,
    max_bytes: int = MAX_JSON_BYTES,
    error: Callable[[str], Exception] = InputFileError,
    problem_error: Callable[[str], Exception] | None = None,
) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes`.

    Otherwise raises `error("<what> <path>: <problem>")`, or `problem_error("<problem>")`
    where given (for errors that name the file themselves, as `CheckpointError` does).
    """
    if problem_error is None:
        problem_error = lambda problem: error(f"{what} {path}: {problem}")  # noqa: E731
    problem = file_problem(path)
    if problem is not None:
        raise problem_error(problem)
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise problem_error(f"{size} bytes; at most {_size(max_bytes)} are read (is it the right file?)")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as problem_reading:
        raise problem_error(f"cannot be read ({problem_reading.strerror or problem_reading})") from None
    if len(data) > max_bytes:  # it grew while we read
        raise problem_error(f"more than {_size(max_bytes)}; at most that is read (is it the right file?)")
    return data


def read_text_lines(
    path: str | Path,
    what: str,
    max_bytes: int | None = None,
    max_lines: int | None = None,
    error: Callable[[str], Exception] = InputFileError,
) -> list[str]:
    """The lines of the UTF-8 text file `path` (a leading BOM kept for the caller to drop), bounded in size and count.

    The bounds default to MAX_TEXT_BYTES and MAX_TEXT_LINES.
    """
    max_bytes = MAX_TEXT_BYTES if max_bytes is None else max_bytes
    max_lines = MAX_TEXT_LINES if max_lines is None else max_lines
    data = read_bounded_bytes(path, what, max_bytes, error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{what} {path}: cannot be read as UTF-8 text ({problem})") from None
    lines = text.splitlines()
    if len(lines) > max_lines:
        raise error(f"{what} {path}: {len(lines)} lines; at most {max_lines} are read")
    return lines


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MiB" if count >= 1024 * 1024 else f"{count} bytes"
