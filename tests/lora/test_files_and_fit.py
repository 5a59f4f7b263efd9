"""A LoRA file where a model goes is named; a LoRA that does not fit is refused before anything changes."""

from __future__ import annotations

import pytest
import torch
from lokr_helpers import write_lokr
from lora_helpers import draw_lora, run, write_lora
from safetensors.torch import save_file

from flux2_int8 import Int8Linear, load_transformer
from flux2_int8.errors import CheckpointError, Flux2Int8Error, UnsupportedFormatError
from flux2_int8.lora import LoraSpec, load_loras, parse_lora_spec


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


def test_a_lokr_for_another_size_is_refused_naming_file_and_layer(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    transformer = int8_pipeline.transformer
    before = run(transformer, tiny_inputs, torch.float32)
    path, _ = write_lokr("ai-toolkit", tmp_path, {**tiny_config, "num_attention_heads": 4}, name="lokr_wider")
    # its first layer is the fused q/k/v, which fits the separate q/k/v of this model only when the widths match
    with pytest.raises(CheckpointError, match=r"lokr_wider\.safetensors: does not fit this transformer: layer 'transformer_blocks\.0\.attn\.to_qkv' is 32 -> 96 features, the LoRA's is 64 -> 192"):
        load_loras(int8_pipeline, [path])
    assert not hasattr(transformer.transformer_blocks[0].attn, "to_qkv")  # refused before q/k/v were fused
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


@pytest.mark.parametrize(("first", "second", "message"), [
    ("lora:kohya", "lokr:lycoris", r"its LoKr and the LoRA of first\.safetensors both target layer 'transformer_blocks\.0\.attn\.to_q': a LoRA and a LoKr cannot share an INT8/FP8 layer"),
    ("lokr:ai-toolkit", "lokr:lycoris", r"it and first\.safetensors cannot be loaded together: one targets the fused q/k/v holding 'transformer_blocks\.0\.attn\.to_q', the other 'transformer_blocks\.0\.attn\.to_q' itself"),
])
def test_adapters_that_cannot_be_loaded_together_are_refused_before_loading(tmp_path, tiny_config, tiny_inputs, int8_pipeline, first, second, message):
    transformer = int8_pipeline.transformer
    before = run(transformer, tiny_inputs, torch.float32)
    paths = [_write(layout, tmp_path, tiny_config, name) for layout, name in ((first, "first"), (second, "second"))]
    with pytest.raises(CheckpointError, match=r"second\.safetensors: " + message):
        load_loras(int8_pipeline, paths)
    assert not getattr(transformer, "peft_config", None) and not hasattr(transformer.transformer_blocks[0].attn, "to_qkv")
    assert torch.equal(run(transformer, tiny_inputs, torch.float32), before)


def _write(kind_and_layout: str, tmp_path, config: dict, name: str):
    kind, layout = kind_and_layout.split(":")
    if kind == "lokr":
        return write_lokr(layout, tmp_path, config, name=name)[0]
    return write_lora(layout, tmp_path, draw_lora(config), name=name)[0]


def test_a_lokr_over_a_lora_on_int8_layers_is_refused_and_the_lora_kept(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    """Through diffusers' own call, which load_loras' checks do not guard: PEFT's layer construction refuses."""
    lora, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config), name="style")
    lokr, _ = write_lokr("lycoris", tmp_path, tiny_config)
    int8_pipeline.load_lora_weights(str(lora), adapter_name="style")
    with_lora = run(int8_pipeline.transformer, tiny_inputs, torch.float32)
    with pytest.raises(Flux2Int8Error, match="cannot add a LoKr to an INT8/FP8 layer already wrapped by Int8LoraLinear: a LoRA and a LoKr cannot share"):
        int8_pipeline.load_lora_weights(str(lokr), adapter_name="detail")
    assert list(int8_pipeline.transformer.peft_config) == ["style"]  # diffusers removed what it had added
    assert torch.equal(run(int8_pipeline.transformer, tiny_inputs, torch.float32), with_lora)


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

