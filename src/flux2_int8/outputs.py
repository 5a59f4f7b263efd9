"""Claiming an output path: never replace an input, never write into a folder someone else filled.

Every command that writes (quantize, generate, eval, demo, make-tiny, bench,
fetch-weights) asks here before any work, so a typo such as `--out` naming the base's
own transformer folder costs nothing. The rules, in one place:

- an output file is never one of the run's inputs (same path, or the same file
  reached by another name: a hard link or symlink);
- an output folder never holds an input (writing there could replace or shadow it);
- an existing non-empty folder is written into only when flux2-int8 made it (it
  holds the `.flux2-int8` marker, or the writer recognises its own content) or the
  user passed `--overwrite`; even then only the command's own files are replaced;
- an existing file is replaced only when the writer recognises it as its own output
  or the user passed `--overwrite` (side files too: the user never typed their names);
- staging names are unique and created exclusively, so a clean-up never deletes a
  file or folder that happened to carry such a name.

This module sits on the lowest floor (it imports only `errors`), so header-only
commands can use it without pulling torch in.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import Flux2Int8Error

MARKER = ".flux2-int8"  # an empty file in every output folder flux2-int8 created
OVERWRITE_HELP = "write into an existing non-empty folder flux2-int8 did not make (only this command's files are replaced; inputs never are)"
PathLike = str | Path


class OutputError(Flux2Int8Error):
    """An output path that would replace an input or someone else's files."""


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    """The `--overwrite` flag, spelled and explained the same way by every writer."""
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def input_files(*paths: PathLike | None) -> list[Path]:
    """The files a run reads: a file as is, a folder as every file under it; anything absent (a hub id) is skipped."""
    found: list[Path] = []
    for given in paths:
        if given is None:
            continue
        path = Path(given).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.name != MARKER)
    return found


def claim_file(
    path: PathLike, inputs: Iterable[Path] = (), option: str = "--out", overwrite: bool = True, owned: Callable[[Path], bool] | None = None,
    overwrite_hint: str = "pass --overwrite",
) -> Path:
    """`path` as an output file, once it is known not to be a folder nor any of `inputs`.

    With `overwrite=False` an existing file is replaced only if `owned(path)` says it
    is this writer's own earlier output (a checkpoint by its header, say); the refusal
    tells the user to `overwrite_hint` (a Python function says `overwrite=True`).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    for source in inputs:
        if _same_file(path, source):
            raise OutputError(f"{option} {path}: is also an input of this run ({source}); writing it would replace that input, choose another path")
    if not overwrite and (path.exists() or path.is_symlink()) and not (owned is not None and path.is_file() and owned(path)):
        raise OutputError(f"{option} {path}: exists and is not an output of this command; choose another name, or {overwrite_hint} to replace it")
    return path


def claim_folder(path: PathLike, inputs: Iterable[Path] = (), overwrite: bool = False, option: str = "--out", owned: Callable[[Path], bool] | None = None) -> Path:
    """`path` as an output folder, once it holds no input and is new, empty, ours, or `overwrite` is set.

    `owned` lets a writer recognise its own earlier output by content (a transformer
    export by its config) where it writes no marker.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, not a folder")
    for source in inputs:
        if _inside(source, path):
            raise OutputError(f"{option} {path}: holds {source}, an input of this run; writing there could replace it, choose another folder")
    if path.is_dir() and not overwrite and any(path.iterdir()) and not is_ours(path, owned):
        raise OutputError(
            f"{option} {path}: is a non-empty folder flux2-int8 did not write; choose a new or empty folder, "
            "or pass --overwrite to write this command's files into it (nothing else there is touched)"
        )
    return path


def is_ours(folder: Path, owned: Callable[[Path], bool] | None = None) -> bool:
    """Whether flux2-int8 made `folder`: its marker, or content the writer recognises."""
    return (folder / MARKER).is_file() or (owned is not None and owned(folder))


def mark_folder(folder: PathLike) -> Path:
    """Create `folder` (and parents) and mark it ours, unless it already held someone else's files.

    Called just before the first write, so a refused or failed run leaves no folder behind.
    """
    folder = Path(folder).expanduser()
    fresh = not folder.exists() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    if fresh:
        (folder / MARKER).touch()
    return folder


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it, after resolving symlinks (or is the same file)."""
    resolved, root = path.resolve(), folder.resolve()
    return resolved == root or root in resolved.parents or (path.exists() and folder.exists() and os.path.samefile(path, folder))


@contextmanager
def staged_folder(folder: PathLike) -> Iterator[Path]:
    """A temporary folder beside `folder` to build into; on success its entries move into `folder`.

    Each entry (file or sub-folder) replaces the same-named one by a rename, so the
    target never holds a half-written entry and nothing else in it is touched; on
    any failure, Ctrl-C included, the temporary folder is removed.
    """
    folder = Path(folder).expanduser()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        yield staging
        mark_folder(folder)
        for entry in sorted(staging.iterdir()):
            _replace_entry(entry, folder / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_entry(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, retired / target.name)
        os.replace(source, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(source, target)


def temporary_beside(path: PathLike) -> Path:
    """A new, empty file beside `path` with a unique name, created exclusively (so it is ours to delete).

    Created with mode 0666 less the umask, like any file the user writes; the caller
    writes it, renames it onto `path`, and unlinks it on failure.
    """
    path = Path(path)
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write a text file (UTF-8) through a temporary name beside it, then rename: the old
    file or the whole new one, never a truncated one; the temporary is removed on any
    failure (a full disk, Ctrl-C)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
