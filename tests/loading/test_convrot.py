"""ConvRot INT8 files, written here as convert_to_quant writes them, load and run exactly.

`convert_to_quant --int8 --comfy_quant --simple --scaling-mode row --convrot` rotates each
quantized weight along K in groups of G with a Hadamard matrix (regular for powers of 4,
Sylvester otherwise), quantizes it per row (or per tensor with `--scaling-mode tensor`) and
marks the layer `{"format": "int8_tensorwise", "convrot": true, "convrot_groupsize": G,
"per_row": true}`; layers G does not divide stay plain. The rotation, the writer and the
float64 reference below are the test's own (numpy/scipy), not the package's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from flux2_int8 import Int8Linear, load_transformer
from flux2_int8.cli import main
from flux2_int8.errors import CheckpointError, UnsupportedFormatError
from flux2_int8.formats.inspect import describe
from flux2_int8.formats.keys import diffusers_to_bfl, map_diffusers_module
from flux2_int8.quantization.export import quantized_linears
from flux2_int8.quantization.recipe import Recipe
from safetensors.torch import save_file

PREFIX = "model.diffusion_model."


def independent_hadamard(group: int) -> np.ndarray:
    """Regular Hadamard (Kronecker powers of H4) for powers of 4, else scipy's Sylvester; / sqrt(G)."""
    if (group.bit_length() - 1) % 2 == 0:  # a power of 4
        h4 = np.array([[1, 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]], dtype=np.float64)
        matrix = np.ones((1, 1))
        while matrix.shape[0] < group:
            matrix = np.kron(matrix, h4)
    else:
        matrix = scipy.linalg.hadamard(group).astype(np.float64)
    return matrix / np.sqrt(group)


def rotate_rows(matrix: np.ndarray, group: int) -> np.ndarray:
    """[R, K] -> [R, K]: each group of G columns times H (H is symmetric: H == H.T)."""
    rows, width = matrix.shape
    return (matrix.reshape(rows, width // group, group) @ independent_hadamard(group).T).reshape(rows, width)


def convert_to_quant_convrot(path, model: nn.Module, group: int, per_row: bool = True, prefix: str = PREFIX) -> dict[str, int | None]:
    """Write `model` as convert_to_quant's ConvRot INT8; returns each quantized BFL layer's group size (None: plain)."""
    quantized = {map_diffusers_module(name)[0] for name in quantized_linears(model, Recipe())}
    bfl = diffusers_to_bfl({key: value.detach().double() for key, value in model.state_dict().items()})
    tensors, layers, groups = {}, {}, {}
    for key, value in bfl.items():
        module, _, param = key.rpartition(".")
        if module not in quantized or param != "weight":
            tensors[prefix + key] = value.to(torch.bfloat16)
            continue
        weight = value.numpy()
        rotated = weight.shape[1] % group == 0
        if rotated:
            weight = rotate_rows(weight, group)
        amax = np.abs(weight).max(axis=1, keepdims=True) if per_row else np.abs(weight).max()
        scale = (amax / 127).astype(np.float32)
        tensors[prefix + key] = torch.from_numpy(np.clip(np.round(weight / scale), -127, 127).astype(np.int8))
        tensors[f"{prefix}{module}.weight_scale"] = torch.from_numpy(np.asarray(scale, dtype=np.float32))
        marker = {"format": "int8_tensorwise"}
        if rotated:
            marker.update(convrot=True, convrot_groupsize=group)
        if per_row:
            marker["per_row"] = True
        tensors[f"{prefix}{module}.comfy_quant"] = torch.tensor(list(json.dumps(marker).encode()), dtype=torch.uint8)
        layers[module] = {"format": "int8_tensorwise"}
        groups[module] = group if rotated else None
    save_file(tensors, str(path), metadata={"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})})
    return groups


class ReferenceConvRot(nn.Module):
    """float64 ConvRot W8A8 as the file means it: rotate x, quantize per row, integer product, rescale."""

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, group: int | None) -> None:
        super().__init__()
        self.weight, self.scale, self.group = weight.long(), weight_scale.double().reshape(-1), group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leading = x.shape[:-1]
        x2d = x.double().reshape(-1, x.shape[-1])
        if self.group:
            x2d = torch.from_numpy(rotate_rows(x2d.numpy(), self.group))
        amax = x2d.abs().amax(dim=1, keepdim=True)
        step = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
        y = (torch.clamp(torch.round(x2d / step), -128, 127).long() @ self.weight.t()).double() * step * self.scale
        return y.reshape(*leading, -1)


def reference_model(loaded: nn.Module, groups: dict[str, int | None]) -> nn.Module:
    """The loaded model in float64, each quantized linear replaced by `ReferenceConvRot` of its stored tensors."""
    import copy

    reference = copy.deepcopy(loaded)
    for name, module in list(reference.named_modules()):
        if isinstance(module, Int8Linear):
            group = groups[map_diffusers_module(name)[0]]
            parent, _, child = name.rpartition(".")
            setattr(reference.get_submodule(parent), child, ReferenceConvRot(module.weight, module.weight_scale, group))
    return reference.double()


def run(model, inputs, dtype):
    with torch.no_grad():
        return model(**{k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}).sample


@pytest.mark.parametrize("group, per_row", [(4, True), (16, True), (64, True), (8, True), (16, False)])
def test_convert_to_quant_convrot_files_match_a_float64_reference(tmp_path, tiny_model, tiny_inputs, group, per_row):
    path = tmp_path / f"convrot-{group}.safetensors"
    groups = convert_to_quant_convrot(path, tiny_model, group, per_row)
    loaded = load_transformer(path, dtype=torch.float32)
    layers = {name: m for name, m in loaded.named_modules() if isinstance(m, Int8Linear)}
    assert {m.rotation_group_size for m in layers.values()} == set(groups.values())  # 64: rotated and plain mixed
    assert all(m.activations == "dynamic" for m in layers.values())
    y = run(loaded, tiny_inputs, torch.float32)
    want = run(reference_model(loaded, groups), tiny_inputs, torch.float64)
    # Bound: the layer rotates and rescales in float32, the reference in float64; an activation
    # within a float32 ulp of a rounding tie can land one int8 step away (measured: 2e-7 to 5e-6
    # on these cases), while a wrong rotation moves the tiny model's output by 8e-3 to 2e-2
    # (its residual stream carries most of the output; see the next test).
    assert torch.linalg.norm(y.double() - want) / torch.linalg.norm(want) < 1e-4
    # and it is the same picture as the float model, within INT8's error
    float_y = run(tiny_model, tiny_inputs, torch.float32)
    assert torch.linalg.norm(y - float_y) / torch.linalg.norm(float_y) < 0.05


def test_a_wrong_hadamard_would_be_caught(tmp_path, tiny_model, tiny_inputs):
    """The bound above separates: reading a regular-Hadamard file as if it were Sylvester is 100x past it."""
    path = tmp_path / "convrot.safetensors"
    groups = convert_to_quant_convrot(path, tiny_model, 16)
    loaded = load_transformer(path, dtype=torch.float32)
    for module in loaded.modules():
        if isinstance(module, Int8Linear) and module.rotation is not None:
            module.rotation = torch.from_numpy(scipy.linalg.hadamard(16) / 4.0).float()
    y = run(loaded, tiny_inputs, torch.float32)
    want = run(reference_model(loaded, groups), tiny_inputs, torch.float64)
    assert torch.linalg.norm(y.double() - want) / torch.linalg.norm(want) > 1e-2


def test_unprefixed_keys_and_the_diffusers_round_trip(tmp_path, tiny_model, tiny_inputs):
    from diffusers import Flux2Transformer2DModel

    path = tmp_path / "convrot.safetensors"
    convert_to_quant_convrot(path, tiny_model, 16, prefix="")
    loaded = load_transformer(path)
    folder = tmp_path / "saved"
    loaded.save_pretrained(folder)
    again = Flux2Transformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    rotated = [name for name, m in loaded.named_modules() if isinstance(m, Int8Linear) and m.rotation is not None]
    assert rotated and all(again.get_submodule(name).rotation_group_size == 16 for name in rotated)
    assert all(again.get_submodule(name).rotation.dtype == torch.float32 for name in rotated)
    assert torch.equal(run(loaded, tiny_inputs, torch.bfloat16), run(again, tiny_inputs, torch.bfloat16))
    # and load_transformer reads the saved folder (the rotation as a stored [G, G] tensor)
    assert torch.equal(run(load_transformer(folder), tiny_inputs, torch.bfloat16), run(loaded, tiny_inputs, torch.bfloat16))


def test_inspect_describes_the_rotation(tmp_path, tiny_model, capsys):
    path = tmp_path / "convrot.safetensors"
    groups = convert_to_quant_convrot(path, tiny_model, 64)
    summary = describe(path)
    rotated = sum(1 for g in groups.values() if g)
    assert summary["loadable"] and summary["rotation"] == {"kind": "convrot", "layers": rotated, "of_int8": len(groups), "group_sizes": {"64": rotated}, "hadamard": {"regular": rotated}}
    assert main(["inspect", str(path)]) == 0
    assert f"rotation:     convrot, {rotated} of {len(groups)} int8 linears (group 64: {rotated}; regular Hadamard)" in capsys.readouterr().out


def test_static_input_scales_in_the_rotated_basis_are_used(tmp_path, tiny_model, tiny_inputs):
    """A calibrated `input_scale` beside a ConvRot layer quantizes the rotated input with it."""
    from safetensors.torch import load_file

    path = tmp_path / "convrot.safetensors"
    convert_to_quant_convrot(path, tiny_model, 16)
    tensors = load_file(str(path))
    for key in [k for k in tensors if k.endswith(".weight_scale")]:
        tensors[key.replace(".weight_scale", ".input_scale")] = torch.tensor(0.05)
    static_path = tmp_path / "static.safetensors"
    save_file(tensors, str(static_path), metadata={"format": "test"})
    loaded = load_transformer(static_path, dtype=torch.float32)
    layer = loaded.transformer_blocks[0].attn.to_out[0]
    assert layer.activations == "static" and layer.rotation_group_size == 16
    x = torch.randn(5, layer.in_features)
    reference = ReferenceConvRot(layer.weight, layer.weight_scale, 16)
    rotated = torch.from_numpy(rotate_rows(x.double().numpy(), 16))
    want = (torch.clamp(torch.round(rotated / 0.05), -128, 127).long() @ reference.weight.t()).double() * 0.05 * reference.scale
    assert torch.linalg.norm(layer(x).double() - want) / torch.linalg.norm(want) < 1e-5


@pytest.mark.parametrize(
    "marker, fragment",
    [
        ({"format": "int8_tensorwise", "convrot": True, "convrot_groupsize": 12, "per_row": True}, "ConvRot group size 12"),
        ({"format": "int8_tensorwise", "convrot": True, "convrot_groupsize": 256, "per_row": True}, "ConvRot group size 256"),
    ],
)
def test_impossible_group_sizes_are_refused_by_name(tmp_path, tiny_model, marker, fragment):
    from safetensors.torch import load_file

    path = tmp_path / "convrot.safetensors"
    convert_to_quant_convrot(path, tiny_model, 16)
    tensors = load_file(str(path))
    tensors[f"{PREFIX}double_blocks.0.img_attn.proj.comfy_quant"] = torch.tensor(list(json.dumps(marker).encode()), dtype=torch.uint8)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=fragment) as caught:
        load_transformer(path)
    assert "double_blocks.0.img_attn.proj" in str(caught.value)


def test_learned_rotations_stay_refused(tmp_path, tiny_model):
    """QuaRot/QuIP-style files (other markers, or a stored matrix that is not ConvRot's Hadamard) are refused by name."""
    from safetensors.torch import load_file

    path = tmp_path / "convrot.safetensors"
    convert_to_quant_convrot(path, tiny_model, 16, prefix="")
    tensors = load_file(str(path))
    quarot = dict(tensors, **{"double_blocks.0.img_attn.proj.comfy_quant": torch.tensor(list(json.dumps({"format": "int8_quarot"}).encode()), dtype=torch.uint8)})
    save_file(quarot, str(tmp_path / "quarot.safetensors"))
    with pytest.raises(UnsupportedFormatError, match="QuaRot"):
        load_transformer(tmp_path / "quarot.safetensors")
    learned = torch.linalg.qr(torch.randn(16, 16))[0]
    save_file(dict(tensors, **{"double_blocks.0.img_attn.proj.rotation": learned.contiguous()}), str(tmp_path / "learned.safetensors"))
    with pytest.raises(CheckpointError, match="learned or random rotation"):
        load_transformer(tmp_path / "learned.safetensors")
