"""diffusers round trips: `save_pretrained` of a loaded INT8 transformer, and
`Flux2Transformer2DModel.from_pretrained` of such folders and of our diffusers export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from diffusers import Flux2Transformer2DModel

from flux2_int8 import Fp8Linear, Int8Linear, load_transformer
from flux2_int8.errors import CheckpointError
from flux2_int8.quantization.export import write_diffusers_folder
from flux2_int8.testing.checkpoints import int8_state, write_bfl

DTYPE = torch.bfloat16


def forward(model, inputs):
    with torch.no_grad():
        return model(**{k: v.to(DTYPE) if v.is_floating_point() else v for k, v in inputs.items()}).sample


def assert_same_model(expected, actual):
    """Same layer types, same tensors (values, dtypes, shapes): outputs then agree bit for bit."""
    for name, module in expected.named_modules():
        assert type(actual.get_submodule(name)) is type(module), name
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), key


@pytest.fixture(scope="module")
def int8_file(tiny_model, tiny_amax, tmp_path_factory):
    return write_bfl(tmp_path_factory.mktemp("int8") / "int8.safetensors", int8_state(tiny_model, tiny_amax))


def test_save_pretrained_then_from_pretrained_gives_identical_outputs(int8_file, tiny_inputs, tmp_path):
    loaded = load_transformer(int8_file, dtype=DTYPE)
    loaded.save_pretrained(tmp_path / "saved")  # q/k/v used to share memory: "Some tensors share memory"
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "flux2-int8"
    reloaded = Flux2Transformer2DModel.from_pretrained(tmp_path / "saved", torch_dtype=DTYPE)
    attention = reloaded.transformer_blocks[0].attn
    assert isinstance(attention.to_q, Int8Linear) and attention.to_q.weight.dtype == torch.int8
    assert attention.to_q.weight_scale.dtype == torch.float32 and attention.to_q.input_scale.dtype == torch.float32
    assert_same_model(loaded, reloaded)
    assert torch.equal(forward(loaded, tiny_inputs), forward(reloaded, tiny_inputs))
    # and around again: the reloaded model saves, and load_transformer reads the folder as before
    reloaded.save_pretrained(tmp_path / "again")
    assert_same_model(loaded, load_transformer(tmp_path / "again", dtype=DTYPE))


def test_loaded_layers_own_their_tensors(int8_file):
    attention = load_transformer(int8_file, dtype=DTYPE).transformer_blocks[0].attn
    storages = {layer.weight.untyped_storage().data_ptr() for layer in (attention.to_q, attention.to_k, attention.to_v)}
    scales = {layer.input_scale.untyped_storage().data_ptr() for layer in (attention.to_q, attention.to_k, attention.to_v)}
    assert len(storages) == 3 and len(scales) == 3


def test_our_diffusers_export_opens_with_from_pretrained(tiny_model, tiny_amax, tiny_config, tiny_inputs, tmp_path):
    from flux2_int8.quantization.export import quantized_state_dict

    folder = write_diffusers_folder(tmp_path / "export", quantized_state_dict(tiny_model, tiny_amax), tiny_config, {"format": "pt"})
    ours = load_transformer(folder, dtype=DTYPE)
    theirs = Flux2Transformer2DModel.from_pretrained(folder, torch_dtype=DTYPE)
    assert isinstance(theirs.single_transformer_blocks[0].attn.to_qkv_mlp_proj, Int8Linear)
    assert_same_model(ours, theirs)
    assert torch.equal(forward(ours, tiny_inputs), forward(theirs, tiny_inputs))


def test_fp8_layers_round_trip(tiny_model, tiny_amax, tmp_path):
    from flux2_int8.formats.write import write_bfl_checkpoint
    from flux2_int8.quantization.export import fp8_state_dict

    loaded = load_transformer(write_bfl_checkpoint(tmp_path / "fp8.safetensors", fp8_state_dict(tiny_model, tiny_amax)), dtype=DTYPE)
    loaded.save_pretrained(tmp_path / "saved")
    reloaded = Flux2Transformer2DModel.from_pretrained(tmp_path / "saved", torch_dtype=DTYPE)
    assert isinstance(reloaded.transformer_blocks[0].attn.to_q, Fp8Linear)
    assert_same_model(loaded, reloaded)


def test_from_pretrained_validates_like_load_transformer(int8_file, tmp_path):
    from safetensors.torch import load_file, save_file

    load_transformer(int8_file, dtype=DTYPE).save_pretrained(tmp_path / "saved")
    weights = tmp_path / "saved" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["transformer_blocks.0.attn.to_q.weight_scale"] = torch.ones(5)
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="transformer_blocks.0.attn.to_q.weight_scale"):
        Flux2Transformer2DModel.from_pretrained(tmp_path / "saved")


def test_import_flux2_int8_registers_the_quantizer_once_diffusers_is_loaded():
    code = (
        "import diffusers.quantizers.auto as auto\n"
        "assert 'flux2-int8' not in auto.AUTO_QUANTIZER_MAPPING\n"
        "import flux2_int8\n"
        "print('flux2-int8' in auto.AUTO_QUANTIZER_MAPPING)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_dynamic_layers_round_trip(tiny_model, tiny_amax, tiny_inputs, tmp_path):
    """A ComfyUI-style file without input_scale loads dynamic; saved and reopened, it stays dynamic."""
    state = {k: v for k, v in int8_state(tiny_model, tiny_amax).items() if not k.endswith(".input_scale")}
    loaded = load_transformer(write_bfl(tmp_path / "dynamic.safetensors", state), dtype=DTYPE)
    loaded.save_pretrained(tmp_path / "saved")
    reloaded = Flux2Transformer2DModel.from_pretrained(tmp_path / "saved", torch_dtype=DTYPE)
    assert reloaded.transformer_blocks[0].attn.to_q.input_scale is None
    assert_same_model(loaded, reloaded)
    assert torch.equal(forward(loaded, tiny_inputs), forward(reloaded, tiny_inputs))
