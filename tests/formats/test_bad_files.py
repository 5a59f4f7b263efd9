"""Every bad input is refused with a CheckpointError naming the file, the tensor and what was expected."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from flux2_int8 import load_transformer
from flux2_int8.errors import CheckpointError, ConfigError, UnsupportedFormatError
from flux2_int8.formats.keys import diffusers_to_bfl
from flux2_int8.testing.checkpoints import int8_state, write_bfl

QKV = "double_blocks.0.img_attn.qkv"


@pytest.fixture(scope="module")
def good_bfl(tiny_model, tiny_amax) -> dict[str, torch.Tensor]:
    return diffusers_to_bfl(int8_state(tiny_model, tiny_amax, "[N,1]", "0-d"))


def write(tmp_path, tensors, name="bad.safetensors", metadata=None):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def refuse(path, *fragments, error=CheckpointError, **options):
    with pytest.raises(error) as caught:
        load_transformer(path, **options)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_empty_file(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    refuse(tmp_path / "empty.safetensors", "empty")


def test_non_safetensors_files(tmp_path):
    (tmp_path / "text.safetensors").write_bytes(b"this is not a checkpoint at all, just text" * 4)
    refuse(tmp_path / "text.safetensors", "not a safetensors file")
    (tmp_path / "json.safetensors").write_bytes(struct.pack("<Q", 5) + b"[1,2]")
    refuse(tmp_path / "json.safetensors", "not a JSON object")


def test_pickled_checkpoints_are_never_opened(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "model.pt")
    refuse(tmp_path / "model.pt", "only .safetensors", error=UnsupportedFormatError)


def test_truncated_file_names_the_cut_tensor(tmp_path, good_bfl):
    path = write(tmp_path, good_bfl)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    refuse(path, "truncated", "tensor '")


def test_int8_weight_without_weight_scale(tmp_path, good_bfl):
    tensors = {k: v for k, v in good_bfl.items() if k != f"{QKV}.weight_scale"}
    refuse(write(tmp_path, tensors), f"tensor '{QKV}.weight'", "without weight_scale")


def test_int8_weight_without_input_scale_is_refused_when_static_is_asked_for(tmp_path, good_bfl):
    """Without it the layer runs dynamically (tests/loading/test_activations.py); forced static cannot."""
    tensors = {k: v for k, v in good_bfl.items() if k != f"{QKV}.input_scale"}
    refuse(write(tmp_path, tensors), f"tensor '{QKV}.weight'", "without input_scale", "activations='static'", activations="static")


@pytest.mark.parametrize("shape", [(7,), (32,), (96, 2), (2, 1)])
def test_weight_scale_of_the_wrong_shape(tmp_path, good_bfl, shape):
    tensors = dict(good_bfl, **{f"{QKV}.weight_scale": torch.ones(shape)})
    refuse(write(tmp_path, tensors), f"tensor '{QKV}.weight_scale'", "expected [96], [96, 1] or one value")


def test_input_scale_of_the_wrong_shape(tmp_path, good_bfl):
    tensors = dict(good_bfl, **{f"{QKV}.input_scale": torch.ones(3)})
    refuse(write(tmp_path, tensors), f"tensor '{QKV}.input_scale'", "one value")


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (0.0, "zero"), (-0.5, "negative"), (float("inf"), "infinite")])
@pytest.mark.parametrize("param", ["weight_scale", "input_scale"])
def test_unusable_scale_values(tmp_path, good_bfl, value, word, param):
    scale = good_bfl[f"{QKV}.{param}"].clone()
    scale.view(-1)[0] = value
    refuse(write(tmp_path, dict(good_bfl, **{f"{QKV}.{param}": scale})), f"tensor '{QKV}.{param}'", word)


def test_integer_scale_dtype(tmp_path, good_bfl):
    tensors = dict(good_bfl, **{f"{QKV}.input_scale": torch.tensor(3, dtype=torch.int32)})
    refuse(write(tmp_path, tensors), f"tensor '{QKV}.input_scale'", "expected a float")


def test_float_weight_carrying_int8_scales(tmp_path, good_bfl):
    tensors = dict(good_bfl, **{"img_in.weight_scale": torch.ones(32), "img_in.input_scale": torch.tensor(0.1)})
    refuse(write(tmp_path, tensors), "tensor 'img_in.weight'", "carries quantization scales")


def test_scale_without_a_weight(tmp_path, good_bfl):
    tensors = {k: v for k, v in good_bfl.items() if k != "double_blocks.1.img_mlp.2.weight"}
    refuse(write(tmp_path, tensors), "tensor 'double_blocks.1.img_mlp.2.", "without a weight beside it")


def test_tensor_unknown_to_the_bfl_layout(tmp_path, good_bfl):
    tensors = dict(good_bfl, **{"double_blocks.0.img_mlp.5.input_scale": torch.tensor(0.1)})
    refuse(write(tmp_path, tensors), "unknown tensor", "double_blocks.0.img_mlp.5.input_scale")


def test_unknown_keys_and_foreign_models(tmp_path, good_bfl):
    refuse(write(tmp_path, {"encoder.layer.0.weight": torch.zeros(2, 2)}), "no FLUX.2 transformer tensors", error=UnsupportedFormatError)


def test_shapes_that_fit_no_config(tmp_path, good_bfl):
    missing_input = {k: v for k, v in good_bfl.items() if not k.startswith("img_in.")}
    with pytest.raises(ConfigError, match="shapes fit no FLUX.2 config: tensor 'x_embedder.weight' is missing"):
        load_transformer(write(tmp_path, missing_input))
    wrong = dict(good_bfl, **{"double_blocks.1.img_mlp.2.weight": torch.zeros(32, 50, dtype=torch.int8)})
    with pytest.raises(ConfigError, match=r"tensor 'double_blocks.1.img_mlp.2.weight' is \[32, 50\], the config expects \[32, 96\]"):
        load_transformer(write(tmp_path, wrong))


@pytest.mark.parametrize("marker", [{"format": "int8_convrot", "per_row": True}, {"format": "int8_tensorwise", "rotation": "hadamard"}])
def test_comfyui_rotation_markers_are_refused(tmp_path, good_bfl, marker):
    encoded = torch.tensor(list(json.dumps(marker).encode()), dtype=torch.uint8)
    tensors = dict(good_bfl, **{f"{QKV}.comfy_quant": encoded})
    refuse(write(tmp_path, tensors), "rotated weights", error=UnsupportedFormatError)


def test_rotation_in_header_quantization_metadata_is_refused(tmp_path, good_bfl):
    metadata = {"_quantization_metadata": json.dumps({"layers": {QKV: {"format": "int8_quarot"}}})}
    refuse(write(tmp_path, good_bfl, metadata=metadata), "QuaRot/QuIP-style", error=UnsupportedFormatError)


def test_plain_comfyui_markers_are_accepted(tmp_path, good_bfl, tiny_inputs):
    encoded = torch.tensor(list(json.dumps({"format": "int8_tensorwise", "per_row": True}).encode()), dtype=torch.uint8)
    model = load_transformer(write(tmp_path, dict(good_bfl, **{f"{QKV}.comfy_quant": encoded})))
    assert model.transformer_blocks[0].attn.to_q.weight.dtype == torch.int8


def test_folder_without_config(tmp_path):
    (tmp_path / "folder").mkdir()
    refuse(tmp_path / "folder", "config.json")


def test_missing_path(tmp_path):
    refuse(tmp_path / "nope.safetensors", "no such file")


def test_written_checkpoint_passes(tmp_path, tiny_model, tiny_amax):
    assert load_transformer(write_bfl(tmp_path / "ok.safetensors", int8_state(tiny_model, tiny_amax))) is not None
