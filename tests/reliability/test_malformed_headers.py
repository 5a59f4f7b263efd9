"""Item 2 of issue 14: plausible-looking but malformed safetensors headers are refused by every command,
with one line naming the file (and the tensor), before any data is read."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from reliability_helpers import TINY_GENERATE, copy_tiny_base, run_cli

from flux2_int8.errors import CheckpointError
from flux2_int8.formats.header import read_header


def write_raw(path: Path, header: bytes | str, data: bytes) -> Path:
    raw = header.encode() if isinstance(header, str) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def entry(dtype: object = "F32", shape: object = (2,), offsets: object = (0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape, "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


# name -> (header, data bytes, words the one-line error must hold)
CASES = {
    "negative offsets": ({"w": entry(offsets=(-8, 0))}, 8, ("'w'", "data_offsets")),
    "begin after end": ({"w": entry(offsets=(8, 0))}, 8, ("'w'", "begin <= end")),
    "overlapping tensors": ({"a": entry(offsets=(0, 8)), "b": entry(offsets=(4, 12))}, 12, ("overlap",)),
    "a gap between tensors": ({"a": entry(offsets=(0, 8)), "b": entry(offsets=(12, 20))}, 20, ("belong to no tensor",)),
    "bytes after the last tensor": ({"a": entry()}, 12, ("after the last tensor",)),
    "float shape": ({"w": entry(shape=[2.0])}, 8, ("'w'", "shape")),
    "string shape": ({"w": entry(shape=["2"])}, 8, ("'w'", "shape")),
    "negative shape": ({"w": entry(shape=[-2])}, 8, ("'w'", "shape")),
    "shape not a list": ({"w": entry(shape=2)}, 8, ("'w'", "shape")),
    "boolean offsets": ({"w": entry(offsets=[False, True])}, 8, ("'w'", "data_offsets")),
    "null data_offsets": ({"w": entry(offsets=None)}, 8, ("'w'", "data_offsets")),
    "three data_offsets": ({"w": entry(offsets=[0, 4, 8])}, 8, ("'w'", "data_offsets")),
    "unknown dtype": ({"w": entry(dtype="F12")}, 8, ("'w'", "dtype")),
    "dtype not a string": ({"w": entry(dtype=["F32"])}, 8, ("'w'", "dtype")),
    "size not dtype x shape": ({"w": entry(shape=[3])}, 8, ("'w'", "does not match")),
    "metadata a list": ({"__metadata__": ["a"], "w": entry()}, 8, ("__metadata__",)),
    "metadata a string": ({"__metadata__": "format", "w": entry()}, 8, ("__metadata__",)),
    "metadata values not strings": ({"__metadata__": {"n": 1}, "w": entry()}, 8, ("__metadata__",)),
    "entry not an object": ({"w": [1, 2]}, 8, ("'w'",)),
}


@pytest.fixture(params=sorted(CASES))
def bad_file(request, tmp_path) -> tuple[Path, tuple[str, ...]]:
    header, size, words = CASES[request.param]
    return write_raw(tmp_path / "bad.safetensors", json.dumps(header), bytes(size)), words


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [deep_json(100_000), '{"w": ' + deep_json(50) + "}", '{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, ' + "9" * 5001 + "]}}"])
def test_hostile_json_is_refused_without_a_recursion_or_digit_error(tmp_path, text):
    path = write_raw(tmp_path / "deep.safetensors", text, bytes(8))
    with pytest.raises(CheckpointError, match="nested|not JSON"):
        read_header(path)
    run_cli("inspect", path).assert_one_error_line(2, str(path))


def test_inspect_refuses_each_malformed_header(bad_file):
    path, words = bad_file
    run_cli("inspect", path).assert_one_error_line(2, str(path), *words)


def test_generate_refuses_a_malformed_checkpoint_before_loading_anything(bad_file, tmp_path):
    path, words = bad_file
    base = copy_tiny_base(tmp_path / "base")
    out = tmp_path / "out"
    run_cli("generate", "--base", base, "--transformer", path, "--prompt", "a cube", "--out", out, *TINY_GENERATE).assert_one_error_line(2, str(path), *words)
    assert not out.exists()


def test_eval_and_bench_refuse_a_malformed_checkpoint(tmp_path):
    path = write_raw(tmp_path / "bad.safetensors", json.dumps({"w": entry(offsets=(-8, 0))}), bytes(8))
    base = copy_tiny_base(tmp_path / "base")
    run_cli("eval", "--base", base, "--candidate", f"q={path}", "--out", tmp_path / "e", "--metrics", "psnr").assert_one_error_line(2, str(path), "data_offsets")
    assert not (tmp_path / "e" / "images").exists()
    bench = ("bench", "--base", "klein-4b", "--transformer", path, "--out", tmp_path / "b", "--compile", "off", "--repeats", "1", "--device", "cpu")
    run_cli(*bench).assert_one_error_line(2, str(path), "data_offsets")
    assert not (tmp_path / "b").exists()


def test_a_well_formed_header_still_reads(tmp_path):
    header = {"__metadata__": {"format": "pt"}, "a": entry(offsets=(0, 8)), "empty": entry(shape=(0,), offsets=(8, 8)), "b": entry(dtype="I8", shape=(2, 2), offsets=(8, 12))}
    parsed = read_header(write_raw(tmp_path / "ok.safetensors", json.dumps(header), bytes(12)))
    assert parsed.metadata == {"format": "pt"}
    assert {name: info.shape for name, info in parsed.tensors.items()} == {"a": (2,), "empty": (0,), "b": (2, 2)}


def test_deep_json_in_a_metadata_value_is_only_text(tmp_path):
    from safetensors.torch import load_file, save_file

    source = copy_tiny_base(tmp_path / "base") / "transformer-bf16.safetensors"
    path = tmp_path / "odd.safetensors"
    save_file(load_file(source), path, metadata={"description": "[" * 100_000, "quantization_config": "{" * 1000})
    outcome = run_cli("inspect", path)
    assert outcome.code == 0 and "Traceback" not in outcome.stderr, outcome.stderr


@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("config.json", b"\xff\xfe{", ("config.json", "not valid JSON")),
        ("config.json", b"[" * 100_000, ("config.json", "nested")),
        ("config.json", b"[1]", ("config.json", "JSON object")),
        ("diffusion_pytorch_model.safetensors.index.json", b'{"weight_map": [1]}', ("index.json", "weight_map")),
    ],
)
def test_a_transformer_folder_with_a_malformed_config_or_index_is_one_line(tmp_path, file, content, words):
    folder = copy_tiny_base(tmp_path / "base") / "transformer"
    (folder / file).write_bytes(content)
    run_cli("inspect", folder).assert_one_error_line(2, *words)
