"""Atomic safetensors writes: complete file or nothing, with ordinary permissions."""

from __future__ import annotations

import os

import pytest
import torch

from flux2_int8.errors import Flux2Int8Error
from flux2_int8.formats.write import write_safetensors_atomic


def test_written_file_has_umask_permissions_and_no_temporary_left(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_safetensors_atomic(tmp_path / "a.safetensors", {"x": torch.ones(2)})
    finally:
        os.umask(previous)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_a_failed_write_leaves_neither_output_nor_temporary(tmp_path):
    with pytest.raises(Exception):
        write_safetensors_atomic(tmp_path / "b.safetensors", {"x": "not a tensor"})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(Flux2Int8Error, match="does not exist"):
        write_safetensors_atomic(tmp_path / "nope" / "c.safetensors", {"x": torch.ones(1)})
