"""`inspect` describes the package's own INT8 text encoder file instead of refusing it."""

from __future__ import annotations

import json

import numpy as np
from cli_helpers import run_cli
from safetensors.numpy import save_file

from flux2_int8.formats.inspect import describe

CONFIG = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": 1, "hidden_size": 8}


def _text_encoder_file(path):
    tensors = {
        "model.layers.0.self_attn.q_proj.weight": np.ones((8, 8), np.int8),
        "model.layers.0.self_attn.q_proj.weight_scale": np.ones((8,), np.float32),
        "model.layers.0.self_attn.q_proj.input_scale": np.ones((), np.float32),
        "model.layers.0.mlp.up_proj.weight": np.ones((16, 8), np.int8),
        "model.layers.0.mlp.up_proj.weight_scale": np.ones((16,), np.float32),
        "model.layers.0.mlp.up_proj.input_scale": np.ones((), np.float32),
        "model.embed_tokens.weight": np.ones((32, 8), np.float16),
        "model.norm.weight": np.ones((8,), np.float16),
    }
    save_file(tensors, str(path), metadata={"text_encoder_config": json.dumps(CONFIG), "format": "flux2-int8"})
    return path


def test_the_text_encoder_file_is_described_from_its_header(tmp_path):
    summary = describe(_text_encoder_file(tmp_path / "q-text-encoder.safetensors"))
    assert summary["loadable"] is True
    assert summary["linears"] == {"int8": 2, "fp8": 0, "float": 1, "total": 3}
    assert "Qwen3ForCausalLM" in summary["variant"] and "hidden size 8" in summary["variant"]


def test_inspect_exits_0_and_says_what_it_is(tmp_path):
    path = _text_encoder_file(tmp_path / "q-text-encoder.safetensors")
    code, out, err = run_cli("inspect", str(path))
    assert code == 0, err
    assert "text encoder" in out and "2 int8" in out
    code, out, _ = run_cli("inspect", str(path), "--json")
    assert code == 0 and json.loads(out)["format"] == "flux2-int8-text-encoder"
