"""A LoRA file where a model goes is named; a LoRA that does not fit is refused before anything changes."""

from __future__ import annotations

import pytest
import torch
from lora_helpers import draw_lora, run, write_lora
from safetensors.torch import save_file

from flux2_int8 import Int8Linear, load_transformer
from flux2_int8.errors import CheckpointError, Flux2Int8Error, UnsupportedFormatError
from flux2_int8.lora import LoraSpec, load_loras, parse_lora_spec


def write_lokr(path, config: dict) -> None:
    """ai-toolkit's FLUX.2 LoKr keys: Kronecker factors of the fused qkv, `lokr_w1` [a, b] and `lokr_w2` [c, d]."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    save_file({
        "diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1": torch.randn(3, 2),
        "diffusion_model.double_blocks.0.img_attn.qkv.lokr_w2": torch.randn(hidden, hidden // 2),
    }, str(path))


@pytest.mark.parametrize("layout", ["diffusers", "kohya", "ai-toolkit"])
def test_load_transformer_on_a_lora_says_it_is_a_lora(tmp_path, tiny_config, layout):
    path, _ = write_lora(layout, tmp_path, draw_lora(tiny_config, rank=4))
    # formats.foreign names the file; this checks it does so for the files the tools write
    with pytest.raises(UnsupportedFormatError, match=r"a LoRA adapter \(.*; rank 4, \d+ layers; .*\), not a transformer checkpoint"):
        load_transformer(path)


def test_a_lora_for_another_size_is_refused_naming_file_and_layer(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    transformer = int8_pipeline.transformer
    before = run(transformer, tiny_inputs, torch.float32)
    fits, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config), name="fits")
    wider, _ = write_lora("ai-toolkit", tmp_path, draw_lora(tiny_config, hidden_override=64), name="wider")
    with pytest.raises(CheckpointError, match=r"wider\.safetensors: does not fit this transformer: layer 'transformer_blocks\.0\.attn\.to_q' is 32 -> 32 features, the LoRA's is 64 -> 64"):
        load_loras(int8_pipeline, [fits, wider])
    # checked before the first was loaded: the model is untouched
    assert not getattr(transformer, "peft_config", None)
    assert isinstance(transformer.transformer_blocks[0].attn.to_q, Int8Linear)
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


def test_a_lora_for_layers_this_model_lacks_is_refused(tmp_path, int8_pipeline):
    path = tmp_path / "flux1.safetensors"  # a FLUX.1 LoRA names layers FLUX.2 does not have
    save_file({"transformer.transformer_blocks.0.norm1.linear.lora_A.weight": torch.zeros(4, 32), "transformer.transformer_blocks.0.norm1.linear.lora_B.weight": torch.zeros(192, 4)}, str(path))
    with pytest.raises(CheckpointError, match=r"flux1\.safetensors: does not fit this transformer: it targets layer 'transformer_blocks\.0\.norm1\.linear'"):
        load_loras(int8_pipeline, [path])


def test_lokr_on_int8_is_refused_clearly(tmp_path, tiny_config, int8_pipeline):
    path = tmp_path / "lokr.safetensors"
    write_lokr(path, tiny_config)
    with pytest.raises(CheckpointError, match="LoKr adapter cannot be applied to INT8/FP8 layers"):
        load_loras(int8_pipeline, [path])


def test_a_model_file_is_not_a_lora(int8_file, int8_pipeline):
    with pytest.raises(CheckpointError, match="not a LoRA"):
        load_loras(int8_pipeline, [int8_file[0]])


def test_load_loras_scales_and_names(tmp_path, tiny_config, int8_pipeline):
    a, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, seed=1), name="my.style")
    b, _ = write_lora("ai-toolkit", tmp_path, draw_lora(tiny_config, seed=2), name="other")
    names = load_loras(int8_pipeline, [a, b], [0.5, 2.0])
    assert names == ["my_style", "other"]
    layer = int8_pipeline.transformer.transformer_blocks[0].attn.to_q
    assert float(layer.lora_scale_tensor["my_style"]) == pytest.approx(0.5)  # diffusers folds kohya alpha into the factors
    assert float(layer.lora_scale_tensor["other"]) == pytest.approx(2.0)


@pytest.mark.parametrize(("text", "spec"), [
    ("style.safetensors", LoraSpec("style.safetensors")),
    ("style.safetensors:0.8", LoraSpec("style.safetensors", 0.8)),
    ("owner/repo:1.5", LoraSpec("owner/repo", 1.5)),
    ("C:/loras/style.safetensors", LoraSpec("C:/loras/style.safetensors")),
    ("owner/repo/file.safetensors:-1", LoraSpec("owner/repo/file.safetensors", -1.0)),
])
def test_parse_lora_spec(text, spec):
    assert parse_lora_spec(text) == spec


def test_parse_lora_spec_refuses_empty():
    with pytest.raises(Flux2Int8Error):
        parse_lora_spec("")

