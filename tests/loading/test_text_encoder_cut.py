"""The cut text encoder: only the Qwen3 layers the pipeline reads, prompt embeddings bit-identical to the full model's."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers import Flux2KleinPipeline
from safetensors.torch import load_file, save_file
from transformers import Qwen3Config

from flux2_int8.errors import ConfigError
from flux2_int8.loading.text_encoder import load_float_text_encoder, load_text_encoder
from flux2_int8.loading.text_encoder_cut import cut_for, full_encoder_bytes, module_bytes
from flux2_int8.planning.text_encoder import pipeline_hidden_state_layers

PROMPTS = ["a red cube", "three blue circles on a grey background"]


def _builtin(name: str):
    if name == "tiny":
        from flux2_int8.tiny import tiny_pipeline_cache

        return tiny_pipeline_cache(), 512
    from flux2_int8.nano import NANO_MAX_SEQUENCE_LENGTH, nano_folder

    return nano_folder(), NANO_MAX_SEQUENCE_LENGTH


def test_the_cut_follows_the_pipelines_own_default():
    import inspect

    default = inspect.signature(Flux2KleinPipeline.__call__).parameters["text_encoder_out_layers"].default
    assert pipeline_hidden_state_layers() == tuple(default) == (9, 18, 27)
    config = Qwen3Config(num_hidden_layers=36)
    assert cut_for(config).depth == 27 and cut_for(config, (3, 5)).depth == 5
    assert cut_for(config, (9, -1)).depth == 36  # counted from the end: nothing is cut
    with pytest.raises(ConfigError, match="hidden state 40"):
        cut_for(config, (40,))


@pytest.mark.parametrize("name", ["tiny", "nano"])
def test_cut_encoder_gives_bit_identical_prompt_embeddings(name):
    folder, tokens = _builtin(name)
    pipe = Flux2KleinPipeline.from_pretrained(folder, dtype=torch.bfloat16, local_files_only=True)
    cut = load_float_text_encoder(folder, dtype=torch.bfloat16)
    assert type(cut).__name__ == "Qwen3Model" and not hasattr(cut, "lm_head")
    assert cut.config.num_hidden_layers == 27 == len(cut.layers) and isinstance(cut.norm, torch.nn.Identity)
    with torch.no_grad():
        full, _ = pipe.encode_prompt(prompt=PROMPTS, device="cpu", max_sequence_length=tokens)
        pipe.text_encoder = cut
        mine, _ = pipe.encode_prompt(prompt=PROMPTS, device="cpu", max_sequence_length=tokens)
    assert torch.equal(full, mine)
    # Layer 27 is not the last layer here (28): a norm applied to it would change the embeddings.
    assert full_encoder_bytes(pipe.text_encoder.config, torch.bfloat16) - module_bytes(cut) > 0


def test_a_cut_that_keeps_the_last_layer_keeps_the_norm(tmp_path):
    """An encoder whose last layer is the deepest one read: hidden_states[-1] is the normed output, so the norm stays."""
    from flux2_int8.tiny import tiny_pipeline_cache

    folder = tiny_pipeline_cache()
    pipe = Flux2KleinPipeline.from_pretrained(folder, dtype=torch.bfloat16, local_files_only=True)
    cut = load_float_text_encoder(folder, dtype=torch.bfloat16, layers=(9, 18, 28))
    assert len(cut.layers) == 28 and not isinstance(cut.norm, torch.nn.Identity)
    with torch.no_grad():
        full, _ = pipe.encode_prompt(prompt=PROMPTS, device="cpu", text_encoder_out_layers=(9, 18, 28))
        pipe.text_encoder = cut
        mine, _ = pipe.encode_prompt(prompt=PROMPTS, device="cpu", text_encoder_out_layers=(9, 18, 28))
    assert torch.equal(full, mine)


def test_an_int8_file_is_read_only_up_to_the_cut(tmp_path, monkeypatch):
    """A full-depth INT8 file (older `quantize` output) loads cut: the cut-off tensors are never read."""
    from safetensors import safe_open

    from flux2_int8.tiny import tiny_pipeline_cache
    from flux2_int8.loading.text_encoder_int8 import load_int8_text_encoder

    folder = tiny_pipeline_cache()  # before the cache moves: the tiny pipeline lives in the same cache root
    monkeypatch.setenv("FLUX2_INT8_CACHE", str(tmp_path / "cache"))
    _, cached = load_int8_text_encoder(folder)
    state = {f"model.{k}": v for k, v in load_file(cached.path).items()}
    state["model.layers.27.mlp.up_proj.weight"] = torch.zeros(96, 32, dtype=torch.int8)  # past the cut: never looked at
    state["model.norm.weight"] = torch.ones(32, dtype=torch.bfloat16)
    full = tmp_path / "full.safetensors"
    save_file(state, full)
    read: list[str] = []

    class RecordingOpen:
        def __init__(self, *args, **kwargs):
            self.handle = safe_open(*args, **kwargs)

        def __enter__(self):
            self.inner = self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def get_tensor(self, key):
            read.append(key)
            return self.inner.get_tensor(key)

    monkeypatch.setattr("flux2_int8.loading.text_encoder.safe_open", RecordingOpen)
    model = load_text_encoder(full, config=folder, dtype=torch.bfloat16)
    assert len(model.layers) == 27
    assert sum(1 for m in model.modules() if type(m).__name__ == "Int8Linear") == 27 * 7
    assert read and "model.layers.27.mlp.up_proj.weight" not in read and "model.norm.weight" not in read


def test_load_pipeline_logs_the_bytes_the_cut_saved(caplog):
    from flux2_int8 import load_pipeline
    from flux2_int8.tiny import tiny_pipeline_cache

    with caplog.at_level(logging.INFO, logger="flux2_int8"):
        pipe = load_pipeline(tiny_pipeline_cache(), device="cpu")
    assert type(pipe.text_encoder).__name__ == "Qwen3Model"
    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("text encoder: 27 of 28 layers"))
    saved = full_encoder_bytes(Qwen3Config.from_pretrained(tiny_pipeline_cache() / "text_encoder"), torch.bfloat16) - module_bytes(pipe.text_encoder)
    assert f"{saved:,} fewer" in message
