"""Reading a safetensors header without touching the tensor data.

`inspect` and format detection read only this, so looking at a 9B file costs a few
kilobytes of memory. We parse the header ourselves (eight bytes of length, then
JSON) because safetensors' own `safe_open` reports a truncated or foreign file with a
terse Rust error and no tensor name, and we want to say which tensor is cut off.
The same bounded JSON parsing (`loads_bounded`) serves every other JSON a user's file
brings (configs, weight indexes, JSON kept in header metadata): see docs/reliability.md.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..textfiles import file_problem, read_bounded_bytes

# safetensors dtype names -> bytes per element.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
# A header is an object of tensor entries, each an object holding one list (two with
# `data_offsets`): three levels. Anything deeper is not a safetensors header.
MAX_JSON_DEPTH = 3
MAX_DOCUMENT_DEPTH = 64  # other JSON (configs, indexes, metadata values): real ones nest a few levels
_JSON_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


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

    One pass checks everything a later reader would trip on, before any tensor data is
    read: the header length and JSON are sane (bounded size and nesting), `__metadata__`
    is a map of strings to strings, and every tensor has a known dtype, a shape of
    non-negative integers and two integer `data_offsets` whose range matches dtype x
    shape, lies inside the file (a truncated download names the first tensor cut off)
    and overlaps no other tensor's range. Every command reads headers through here.
    """
    path = Path(path)
    problem = file_problem(path)  # a FIFO or device is named as such, never opened
    if problem is not None:
        raise CheckpointError(path, problem)
    try:
        file_size = path.stat().st_size
        if file_size == 0:
            raise CheckpointError(path, "the file is empty (0 bytes); expected a safetensors checkpoint")
        with path.open("rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) < 8:
                raise CheckpointError(path, f"not a safetensors file: only {file_size} bytes")
            (header_length,) = struct.unpack("<Q", raw_length)
            if header_length == 0 or header_length > min(MAX_HEADER_BYTES, file_size - 8):
                raise CheckpointError(path, "not a safetensors file: its first 8 bytes are not a plausible header length")
            raw_header = handle.read(header_length)
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror or error})") from None
    entries = _parse_json(path, raw_header)
    metadata = _metadata(path, entries.pop("__metadata__", None))
    data_start = 8 + header_length
    tensors = {name: _tensor_info(path, name, entry, data_start, file_size - data_start) for name, entry in entries.items()}
    _check_layout(path, tensors, data_start, file_size - data_start)
    return SafetensorsHeader(path=path, tensors=tensors, metadata=metadata, file_size=file_size)


def _parse_json(path: Path, raw: bytes) -> dict:
    depth = _nesting_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(path, f"not a safetensors file: its header JSON is nested {depth} levels deep (a header needs {MAX_JSON_DEPTH})")
    try:
        entries = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError, and numbers past Python's digit limit
        raise CheckpointError(path, "not a safetensors file: its header is not JSON") from None
    if not isinstance(entries, dict):
        raise CheckpointError(path, "not a safetensors file: its header is not a JSON object")
    return entries


def loads_bounded(text: str | bytes, max_depth: int = MAX_DOCUMENT_DEPTH) -> Any:
    """`json.loads` for text from a user's file: too deep a nesting is a `ValueError`, never a `RecursionError`.

    Configs, indexes and JSON stored in header metadata all go through here, so a
    hostile document fails like any other malformed JSON (every caller catches ValueError).
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    depth = _nesting_depth(raw)
    if depth > max_depth:
        raise ValueError(f"nested {depth} levels deep (at most {max_depth} are read)")
    return json.loads(text)


def metadata_object(header: SafetensorsHeader, key: str) -> dict[str, Any] | None:
    """The JSON object stored as text under `key` in the header's metadata (None if absent), or a `CheckpointError`."""
    text = header.metadata.get(key)
    if text is None:
        return None
    try:
        document = loads_bounded(text)
    except ValueError as error:
        raise CheckpointError(header.path, f"metadata '{key}' is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise CheckpointError(header.path, f"metadata '{key}' must hold a JSON object")
    return document


def read_json_file(path: Path) -> Any:
    """A small JSON file (a config, a weight index), or a `CheckpointError` naming it."""
    try:
        return loads_bounded(read_bounded_bytes(path, "", problem_error=lambda problem: CheckpointError(path, problem)))
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror or error})") from None
    except ValueError as error:  # also JSONDecodeError and UnicodeDecodeError
        raise CheckpointError(path, f"not valid JSON ({error})") from None


def _nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text, counted outside strings, without parsing it.

    Counting first keeps a hostile header (thousands of `[`) from reaching Python's
    recursive parser and its RecursionError.
    """
    depth = deepest = 0
    for token in _JSON_STRUCTURE.findall(raw):
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _metadata(path: Path, metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(path, "malformed header: '__metadata__' must map strings to strings")
    return metadata


def _tensor_info(path: Path, name: str, entry: object, data_start: int, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise CheckpointError(path, "malformed header entry (needs dtype, shape, data_offsets)", tensor=name)
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise CheckpointError(path, f"unknown dtype {dtype!r}", tensor=name)
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise CheckpointError(path, f"malformed shape {shape!r}: expected a list of non-negative integers", tensor=name)
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise CheckpointError(path, f"malformed data_offsets {offsets!r}: expected two integers [begin, end]", tensor=name)
    start, end = offsets
    if not 0 <= start <= end:
        raise CheckpointError(path, f"malformed data_offsets {offsets!r}: expected 0 <= begin <= end", tensor=name)
    info = TensorInfo(dtype=dtype, shape=tuple(shape), offset=data_start + start)
    if end - start != info.numel * DTYPE_SIZES[dtype]:
        raise CheckpointError(path, f"byte range {start}..{end} does not match {dtype} {list(shape)}", tensor=name)
    if end > data_size:
        raise CheckpointError(
            path, f"the file is truncated: this tensor ends at data byte {end} but only {data_size} bytes of data are present", tensor=name
        )
    return info


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_layout(path: Path, tensors: dict[str, TensorInfo], data_start: int, data_size: int) -> None:
    """Refuse tensors sharing bytes, and data bytes no tensor owns.

    Shared bytes would make one tensor's write show in another; and safetensors' own
    reader requires the ranges to tile the data exactly, so a gap found here is an
    error with a file name instead of a bare `SafetensorError` later.
    """
    ranges = sorted((info.offset - data_start, info.offset - data_start + info.numel * DTYPE_SIZES[info.dtype], name) for name, info in tensors.items())
    covered, previous = 0, None
    for start, end, name in ranges:
        if start < covered:
            raise CheckpointError(path, f"its bytes {start}..{end} overlap those of tensor '{previous}'", tensor=name)
        if start > covered:
            raise CheckpointError(path, f"malformed header: data bytes {covered}..{start} belong to no tensor", tensor=name)
        covered, previous = end, name
    if covered != data_size:
        raise CheckpointError(path, f"malformed header: {data_size - covered} byte(s) after the last tensor's data belong to no tensor")
