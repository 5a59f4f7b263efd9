"""`--text-encoder`: the Qwen3 linears as W8A8 from the same run, loaded back, generating with both."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import Flux2KleinPipeline
from quantize_helpers import quantize_json
from safetensors import safe_open

from flux2_int8 import Int8Linear, load_text_encoder, load_transformer
from flux2_int8.errors import CheckpointError
from flux2_int8.evaluate.metrics import relative_error

PROMPT = "A watercolor painting of a fox in a snowy forest."


@pytest.fixture(scope="module")
def text_encoder_run(tmp_path_factory) -> dict:
    return quantize_json(tmp_path_factory.mktemp("te") / "full.safetensors", "--text-encoder")


def test_text_encoder_file_is_w8a8_with_transformers_names_beside_the_transformer(text_encoder_run):
    path = text_encoder_run["text_encoder_path"]
    assert path.endswith("full-text-encoder.safetensors")
    ranges = text_encoder_run["statistics"]["text_encoder_input_range"]
    # The pipeline reads hidden states up to layer 27: the 28th layer (index 27) is cut, never calibrated nor written.
    assert len(ranges) == 27 * 7 and "layers.26.mlp.down_proj" in ranges and "layers.27.mlp.down_proj" not in ranges
    with safe_open(path, framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.get_slice("model.layers.0.self_attn.q_proj.weight").get_dtype() == "I8"
        assert handle.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
        assert float(handle.get_tensor("model.layers.3.mlp.up_proj.input_scale")) == pytest.approx(ranges["layers.3.mlp.up_proj"] / 127, rel=1e-7)
        metadata = handle.metadata()
    assert "lm_head.weight" not in keys and "model.norm.weight" not in keys  # cut: the pipeline never reads them
    assert "model.layers.26.mlp.down_proj.weight" in keys and "model.layers.27.mlp.down_proj.weight" not in keys
    assert metadata["format"] == "flux2-int8/w8a8-text-encoder"
    assert json.loads(metadata["quantization_recipe"])["kept_layers"] == []  # no LM head in the cut encoder: every linear is INT8


def test_int8_text_encoder_and_transformer_generate_close_to_float(text_encoder_run, tiny_base, float_pipeline):
    text_encoder = load_text_encoder(text_encoder_run["text_encoder_path"], dtype=torch.float32)
    assert sum(isinstance(m, Int8Linear) for m in text_encoder.modules()) == 27 * 7
    assert not hasattr(text_encoder, "lm_head")  # the headless encoder the pipeline reads
    transformer = load_transformer(text_encoder_run["path"], dtype=torch.float32)
    pipe = Flux2KleinPipeline.from_pretrained(tiny_base, transformer=transformer, text_encoder=text_encoder, dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt=PROMPT, device="cpu")
        expected_embeds, _ = float_pipeline.encode_prompt(prompt=PROMPT, device="cpu")
    embed_error = relative_error(embeds, expected_embeds)
    kwargs = dict(prompt=PROMPT, height=64, width=64, num_inference_steps=4, guidance_scale=1.0, output_type="latent")
    latents = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    expected = float_pipeline(**kwargs, generator=torch.Generator().manual_seed(0)).images
    latent_error = relative_error(latents, expected)
    print(f"full INT8 stack vs float: prompt embeddings {embed_error:.4f}, final latents {latent_error:.4f}")
    assert torch.isfinite(latents).all()
    assert embed_error < 0.05 and latent_error < 0.05, (embed_error, latent_error)


def test_text_encoder_config_can_come_from_the_base_folder(text_encoder_run, tiny_base):
    model = load_text_encoder(text_encoder_run["text_encoder_path"], config=tiny_base, dtype=torch.bfloat16)
    assert model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.get_submodule("layers.0.mlp.gate_proj").weight.dtype == torch.int8


def test_a_transformer_file_is_not_a_text_encoder(default_run, tiny_base):
    with pytest.raises(CheckpointError, match="missing from the file"):
        load_text_encoder(default_run["path"], config=tiny_base)
    with pytest.raises(CheckpointError, match="text_encoder_config"):
        load_text_encoder(default_run["path"])
