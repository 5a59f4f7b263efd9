"""Reading one tensor's bytes from a safetensors file with plain `read`, not mmap.

`safe_open` maps the whole file and copies each tensor out of the mapping, so the
touched pages of the mapping count in the process's resident memory beside the
copies: loading a 9B file that way peaks near twice its size. Reading each tensor
into its own buffer keeps the peak at about one file size, which is the loader's
memory budget (issue: <= 1.3x the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch

from ..errors import CheckpointError
from .header import DTYPE_SIZES, TensorInfo

TORCH_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def read_tensor(handle: BinaryIO, path: Path, key: str, info: TensorInfo) -> torch.Tensor:
    """Read one tensor described by a header entry into a fresh CPU tensor."""
    if info.dtype not in TORCH_DTYPES:
        raise CheckpointError(path, f"dtype {info.dtype} is not supported by this loader", tensor=key)
    buffer = torch.empty(info.numel * DTYPE_SIZES[info.dtype], dtype=torch.uint8)
    handle.seek(info.offset)
    if buffer.numel() and handle.readinto(memoryview(buffer.numpy())) != buffer.numel():
        raise CheckpointError(path, "the file ended while reading this tensor (truncated?)", tensor=key)
    return buffer.view(TORCH_DTYPES[info.dtype]).reshape(info.shape)
