"""`quantize --format comfy`: our calibrated BFL file with the markers ComfyUI needs.

The expected markers are built here the way convert_to_quant builds them (a dict ->
`json.dumps` -> UTF-8 bytes -> uint8 tensor; the header map with `format_version` 1.0)
and read back the way ComfyUI's loader does (`json.loads(tensor.numpy().tobytes())`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from flux2_int8 import load_transformer
from flux2_int8.formats.header import read_header
from flux2_int8.formats.inspect import describe
from flux2_int8.formats.write import write_bfl_checkpoint
from flux2_int8.quantization.export import quantized_state_dict, write_comfy_checkpoint

from quantize_helpers import quantize_json


def convert_to_quant_marker(layout: dict) -> torch.Tensor:
    return torch.tensor(list(json.dumps(layout).encode("utf-8")), dtype=torch.uint8)


def assert_comfy_markers(path: Path) -> set[str]:
    """Every int8 layer carries exactly convert_to_quant's row-wise INT8 markers; returns those layers."""
    header = read_header(path)
    int8_layers = {k[: -len(".weight")] for k, info in header.tensors.items() if k.endswith(".weight") and info.dtype == "I8"}
    assert int8_layers
    expected_metadata = {"format_version": "1.0", "layers": {layer: {"format": "int8_tensorwise"} for layer in int8_layers}}
    assert json.loads(header.metadata["_quantization_metadata"]) == expected_metadata
    markers = {k for k in header.tensors if k.endswith(".comfy_quant")}
    assert markers == {f"{layer}.comfy_quant" for layer in int8_layers}
    expected_marker = convert_to_quant_marker({"format": "int8_tensorwise", "per_row": True})
    with safe_open(str(path), framework="pt") as handle:
        for layer in int8_layers:
            marker = handle.get_tensor(f"{layer}.comfy_quant")
            assert marker.dtype == torch.uint8 and torch.equal(marker, expected_marker)
            assert json.loads(marker.numpy().tobytes()) == {"format": "int8_tensorwise", "per_row": True}  # as ComfyUI reads it
            rows = header.tensors[f"{layer}.weight"].shape[0]
            assert header.tensors[f"{layer}.weight_scale"].dtype == "F32" and header.tensors[f"{layer}.weight_scale"].shape == (rows, 1)
            assert header.tensors[f"{layer}.input_scale"].dtype == "F32" and header.tensors[f"{layer}.input_scale"].shape == ()
    return int8_layers


def test_comfy_file_has_convert_to_quant_markers_and_loads_identically(tiny_model, tiny_amax, tiny_inputs, tmp_path):
    state = quantized_state_dict(tiny_model, tiny_amax)
    bfl = write_bfl_checkpoint(tmp_path / "bfl.safetensors", state)
    comfy = write_comfy_checkpoint(tmp_path / "comfy.safetensors", state)
    layers = assert_comfy_markers(comfy)
    plain = read_header(bfl)
    assert {k for k in read_header(comfy).tensors} == set(plain.tensors) | {f"{layer}.comfy_quant" for layer in layers}
    summary = describe(comfy)
    assert summary["loadable"] and summary["format"] == "bfl-int8"
    from_bfl, from_comfy = load_transformer(bfl, dtype=torch.float32), load_transformer(comfy, dtype=torch.float32)
    want, got = from_bfl.state_dict(), from_comfy.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    with torch.no_grad():
        assert torch.equal(from_bfl(**tiny_inputs).sample, from_comfy(**tiny_inputs).sample)


def test_quantize_format_comfy(tmp_path, default_run):
    report = quantize_json(tmp_path / "comfy.safetensors", "--format", "comfy")
    path = Path(report["path"])
    assert_comfy_markers(path)
    metadata = read_header(path).metadata
    assert json.loads(metadata["quantization_recipe"])["kept_layers"]  # our recipe header survives beside ComfyUI's
    ours, plain = load_transformer(path, dtype=torch.float32).state_dict(), load_transformer(default_run["path"], dtype=torch.float32).state_dict()
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)  # same calibration, same seed
