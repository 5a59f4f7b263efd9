"""Reading a safetensors header without touching the tensor data.

`inspect` and format detection read only this, so looking at a 9B file costs a few
kilobytes of memory. We parse the header ourselves (eight bytes of length, then
JSON) because safetensors' own `safe_open` reports a truncated or foreign file with a
terse Rust error and no tensor name, and we want to say which tensor is cut off.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError

# safetensors dtype names -> bytes per element.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    offset: int = 0  # absolute byte offset of the data in the file

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class SafetensorsHeader:
    """What a safetensors file holds, read from its header alone."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0


def read_header(path: str | Path) -> SafetensorsHeader:
    """Read and check a safetensors header; raise `CheckpointError` for anything malformed.

    Checks: the file exists and is not empty, the header length and JSON are sane, every
    tensor's byte range matches its dtype and shape and lies inside the file (so a
    truncated download is caught here, naming the first tensor that is cut off).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    file_size = path.stat().st_size
    if file_size == 0:
        raise CheckpointError(path, "the file is empty (0 bytes); expected a safetensors checkpoint")
    with path.open("rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise CheckpointError(path, f"not a safetensors file: only {file_size} bytes")
        (header_length,) = struct.unpack("<Q", raw_length)
        if header_length == 0 or header_length > min(_MAX_HEADER_BYTES, file_size - 8):
            raise CheckpointError(path, "not a safetensors file: its first 8 bytes are not a plausible header length")
        raw_header = handle.read(header_length)
    entries = _parse_json(path, raw_header)
    metadata = entries.pop("__metadata__", None) or {}
    data_start = 8 + header_length
    tensors = {name: _tensor_info(path, name, entry, data_start, file_size - data_start) for name, entry in entries.items()}
    return SafetensorsHeader(path=path, tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()}, file_size=file_size)


def _parse_json(path: Path, raw: bytes) -> dict:
    try:
        entries = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "not a safetensors file: its header is not JSON") from None
    if not isinstance(entries, dict):
        raise CheckpointError(path, "not a safetensors file: its header is not a JSON object")
    return entries


def _tensor_info(path: Path, name: str, entry: object, data_start: int, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise CheckpointError(path, "malformed header entry (needs dtype, shape, data_offsets)", tensor=name)
    dtype, shape, (start, end) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise CheckpointError(path, f"unknown dtype {dtype!r}", tensor=name)
    info = TensorInfo(dtype=dtype, shape=shape, offset=data_start + start)
    if end - start != info.numel * DTYPE_SIZES[dtype]:
        raise CheckpointError(path, f"byte range {start}..{end} does not match {dtype} {list(shape)}", tensor=name)
    if end > data_size:
        raise CheckpointError(
            path, f"the file is truncated: this tensor ends at data byte {end} but only {data_size} bytes of data are present", tensor=name
        )
    return info
