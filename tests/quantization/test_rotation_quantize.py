"""`quantize --rotation convrot[:G]`: rotated weights, ranges of the rotated input, files our
loader and an independent ComfyUI-style reader (written here, numpy Hadamard) both run exactly."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from quantize_helpers import TINY_ARGS, quantize_json
from safetensors import safe_open
from torch import nn

from flux2_int8 import Int8Linear, load_transformer
from flux2_int8.formats.header import read_header
from flux2_int8.formats.keys import Transform, map_diffusers_module


def test_hadamard(group: int) -> torch.Tensor:
    """The test's own: regular (Kronecker powers of H4) for powers of 4, Sylvester for the rest."""
    base = np.array([[1, 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]]) if (group.bit_length() - 1) % 2 == 0 else np.array([[1, 1], [1, -1]])
    matrix = np.ones((1, 1))
    while matrix.shape[0] < group:
        matrix = np.kron(matrix, base)
    return torch.from_numpy(matrix / np.sqrt(group))


test_hadamard.__test__ = False  # a helper, not a test


def rotate_rows(matrix: torch.Tensor, group: int) -> torch.Tensor:
    rows, width = matrix.shape
    return (matrix.double().reshape(rows, width // group, group) @ test_hadamard(group).t()).reshape(rows, width)


class ComfyStyleLinear(nn.Module):
    """How a ComfyUI-style reader runs a marked INT8 layer: rotate if `convrot`, quantize per token, integer product."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, marker: dict) -> None:
        super().__init__()
        self.weight, self.scale = weight.long(), scale.double().reshape(-1)
        self.group = marker["convrot_groupsize"] if marker.get("convrot") else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = x.double().reshape(-1, x.shape[-1])
        if self.group:
            x2d = rotate_rows(x2d, self.group)
        step = (x2d.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-30)
        y = (torch.clamp(torch.round(x2d / step), -128, 127).long() @ self.weight.t()).double() * step * self.scale
        return y.reshape(*x.shape[:-1], -1)


def comfy_reference(path, loaded: nn.Module) -> tuple[nn.Module, dict[str, dict]]:
    """`loaded` in float64 with every INT8 layer replaced by `ComfyStyleLinear` of the file's own tensors and markers."""
    reference = copy.deepcopy(loaded)
    markers = {}
    with safe_open(str(path), framework="pt") as handle:
        for name, module in list(reference.named_modules()):
            if not isinstance(module, Int8Linear):
                continue
            bfl, transform, position = map_diffusers_module(name)
            marker = json.loads(handle.get_tensor(f"{bfl}.comfy_quant").numpy().tobytes())  # as ComfyUI decodes it
            weight, scale = handle.get_tensor(f"{bfl}.weight"), handle.get_tensor(f"{bfl}.weight_scale")
            if transform is Transform.SPLIT_QKV:
                weight, scale = weight.chunk(3)[position], scale.chunk(3)[position]
            markers[bfl] = marker
            parent, _, child = name.rpartition(".")
            setattr(reference.get_submodule(parent), child, ComfyStyleLinear(weight, scale, marker))
    return reference.double(), markers


def run(model, inputs, dtype):
    with torch.no_grad():
        return model(**{k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}).sample


def test_comfy_format_convrot_file_runs_the_same_in_an_independent_reader(tmp_path, tiny_inputs):
    path = tmp_path / "convrot.safetensors"
    report = quantize_json(path, "--rotation", "convrot:64", "--format", "comfy", "--activations", "dynamic")
    header = read_header(path)
    assert not any(key.endswith(".rotation") for key in header.tensors)  # ComfyUI knows ConvRot by its markers
    loaded = load_transformer(path, dtype=torch.float32)
    reference, markers = comfy_reference(path, loaded)
    rotated = {bfl for bfl, marker in markers.items() if marker.get("convrot")}
    assert rotated and len(rotated) < len(markers)  # 64 divides some input widths of the tiny model, not all
    for bfl in rotated:
        assert markers[bfl] == {"format": "int8_tensorwise", "convrot": True, "convrot_groupsize": 64, "per_row": True}
    layers = json.loads(header.metadata["_quantization_metadata"])["layers"]
    assert {bfl for bfl, layout in layers.items() if layout.get("convrot")} == rotated
    y, want = run(loaded, tiny_inputs, torch.float32), run(reference, tiny_inputs, torch.float64)
    # float32 rotation and rescale against float64: rare one-step flips at rounding ties (see tests/loading/test_convrot.py)
    assert torch.linalg.norm(y.double() - want) / torch.linalg.norm(want) < 1e-4
    assert report["statistics"]["samples"] == []  # dynamic: no calibration run


@pytest.fixture(scope="module")
def static_convrot(tmp_path_factory):
    path = tmp_path_factory.mktemp("convrot") / "q.safetensors"
    return path, quantize_json(path, "--rotation", "convrot:16")


def test_static_convrot_file_holds_rotated_weights_and_rotated_ranges(static_convrot, float_transformer):
    path, report = static_convrot
    loaded = load_transformer(path, dtype=torch.float32)
    recipe = json.loads(read_header(path).metadata["quantization_recipe"])
    assert recipe["rotation"]["kind"] == "convrot" and recipe["rotation"]["group_size"] == 16 and recipe["rotation"]["hadamard"] == "regular"
    layers = {name: m for name, m in loaded.named_modules() if isinstance(m, Int8Linear)}
    assert all(m.rotation_group_size == 16 and m.activations == "static" for m in layers.values())
    assert recipe["rotation"]["layers"] == len(layers)
    for name, layer in layers.items():
        # Undo the rotation with the test's own Hadamard: the float weight, within half a quantization step.
        unrotated = rotate_rows(layer.weight.double() * layer.weight_scale.double()[:, None], 16)  # H is its own inverse
        step = layer.weight_scale.double()[:, None]
        assert ((unrotated - float_transformer.get_submodule(name).weight.double()).abs() <= step * 16**0.5).all(), name
        # The range is of the rotated input: never above sqrt(G) x the raw input's max, not the raw max itself.
        rotated_range = report["statistics"]["input_range"][name]
        raw_amax = report["statistics"]["input_amax"][name]
        assert float(layer.input_scale) == pytest.approx(rotated_range / 127, rel=1e-6)
        assert rotated_range <= raw_amax * 4 + 1e-6


def test_our_bfl_convrot_file_round_trips_exactly(static_convrot, tmp_path, tiny_inputs):
    """ours -> our loader -> save_pretrained -> from_pretrained: the same rotated model, bit for bit."""
    from diffusers import Flux2Transformer2DModel

    path, _ = static_convrot
    assert any(key.endswith(".rotation") for key in read_header(path).tensors)  # our BFL file: [G, G] per layer
    loaded = load_transformer(path)
    loaded.save_pretrained(tmp_path / "saved")
    again = Flux2Transformer2DModel.from_pretrained(tmp_path / "saved", torch_dtype=torch.bfloat16)
    assert torch.equal(run(again, tiny_inputs, torch.bfloat16), run(loaded, tiny_inputs, torch.bfloat16))


@pytest.mark.parametrize("spec", ["convrot:12", "convrot:1", "hadamard", "convrot:x"])
def test_bad_rotation_specs_are_usage_errors(tmp_path, spec):
    code, _, stderr = run_cli("quantize", "--base", "nano", "--out", str(tmp_path / "q.safetensors"), "--rotation", spec, *TINY_ARGS)
    assert code == 2 and "--rotation" in stderr


def test_smoothquant_with_rotation_needs_dynamic_activations(tmp_path):
    from flux2_int8.errors import Flux2Int8Error
    from flux2_int8.quantization.plan import plan_quantize as _plan  # the options checked before torch (quantization/plan.py)

    with pytest.raises(Flux2Int8Error, match="needs --activations dynamic"):
        _plan(tmp_path / "q.safetensors", "bfl", "max", 0.5, False, (), False, None, 64, 0, "static", (), False, "convrot")
    assert _plan(tmp_path / "q.safetensors", "bfl", "max", 0.5, False, (), False, None, 64, 0, "dynamic", (), False, "convrot").rotation == 256
