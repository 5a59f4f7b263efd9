"""`text_encoder="int8"`: the base's Qwen3 quantized at load time, cached, the second load reading INT8 directly."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from flux2_int8 import Int8Linear, load_pipeline
from flux2_int8.cli import main

PROMPT = "A red cube on a blue table"


@pytest.fixture
def cache(tiny_base, tmp_path, monkeypatch):
    """A fresh flux2-int8 cache (the tiny base is built first, in the shared one)."""
    monkeypatch.setenv("FLUX2_INT8_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "text-encoders"


def _messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "flux2_int8"]


def test_int8_at_load_is_cached_and_the_second_load_quantizes_nothing(tiny_base, cache, caplog, monkeypatch, bf16_pipeline):
    from flux2_int8.demo import psnr
    from flux2_int8.evaluate.metrics import relative_error
    from flux2_int8.generate import generate_image

    with caplog.at_level(logging.INFO, logger="flux2_int8"):
        first = load_pipeline(tiny_base, text_encoder="int8", device="cpu")
    (cached,) = cache.glob("*.safetensors")
    assert any("quantized at load time and cached" in m for m in _messages(caplog))
    assert not list(cache.glob("*.partial"))
    layers = [m for m in first.text_encoder.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 27 * 7 and all(layer.activations == "dynamic" for layer in layers)
    assert all(layer.weight_scale.dtype == torch.float32 for layer in layers)

    import flux2_int8.loading.text_encoder_int8 as at_load

    monkeypatch.setattr(at_load, "quantize_weight", None)  # a second quantization would fail
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="flux2_int8"):
        second = load_pipeline(tiny_base, text_encoder="int8", device="cpu")
    assert any("loaded from the cache" in m for m in _messages(caplog))
    assert list(cache.glob("*.safetensors")) == [cached]
    with torch.no_grad():
        int8, _ = second.encode_prompt(prompt=PROMPT, device="cpu")
        bf16, _ = bf16_pipeline.encode_prompt(prompt=PROMPT, device="cpu")
        again, _ = first.encode_prompt(prompt=PROMPT, device="cpu")
    assert torch.equal(int8, again)
    error = relative_error(int8.float(), bf16.float())
    assert 0 < error < 0.05, error  # measured 0.0185 (docs/generate.md)
    second.set_progress_bar_config(disable=True)
    image = generate_image(second, PROMPT, [], 0, 2, 1.0, 64, 64)
    reference = generate_image(bf16_pipeline, PROMPT, [], 0, 2, 1.0, 64, 64)
    assert 35.0 < psnr(image, reference) < float("inf")


def test_a_changed_source_or_a_damaged_cache_file_is_rebuilt(tiny_base, cache, tmp_path):
    import shutil

    from flux2_int8.loading.text_encoder_int8 import load_int8_text_encoder

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    _, first = load_int8_text_encoder(base)
    first.path.write_bytes(b"not a safetensors file")  # damaged: read back, refused, rebuilt
    model, again = load_int8_text_encoder(base)
    assert again.created and again.path == first.path and len(model.layers) == 27
    weights = base / "text_encoder" / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _, changed = load_int8_text_encoder(base)
    assert changed.created and changed.path != first.path


def test_generate_takes_text_encoder_int8(tiny_base, cache, tmp_path, capsys):
    code = main(["generate", "--base", str(tiny_base), "--text-encoder", "int8", "--prompt", PROMPT, "--steps", "1", "--resolution", "64", "--device", "cpu", "--out", str(tmp_path / "cube.png")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp_path / "cube.png").is_file() and list(cache.glob("*.safetensors"))
    assert "note: text encoder: INT8" in err and "note: text encoder: 27 of 28 layers" in err


def test_from_the_hub_only_the_shards_holding_the_read_layers_are_downloaded(tmp_path, monkeypatch):
    """Qwen3-8B's index as published: 5 shards; the last holds layers past 27, the norm and the LM head only."""
    import json

    import flux2_int8.generate.hub as hub

    component = tmp_path / "text_encoder"
    component.mkdir()
    (component / "config.json").write_text(json.dumps({"model_type": "qwen3", "num_hidden_layers": 36}))
    shard = lambda layer: f"model-0000{1 + layer // 8}-of-00005.safetensors"  # noqa: E731 (layers 0-7 in shard 1, ...)
    weight_map = {f"model.layers.{n}.mlp.up_proj.weight": shard(n) for n in range(36)}
    weight_map.update({"model.embed_tokens.weight": shard(0), "model.norm.weight": shard(35), "lm_head.weight": shard(35)})
    (component / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    asked = []
    monkeypatch.setattr(hub, "snapshot_download", lambda repo_id, allow_patterns, **kwargs: asked.append(allow_patterns))
    hub.download_text_encoder_weights("owner/klein", tmp_path, local_files_only=True)
    assert asked == [[f"text_encoder/model-0000{k}-of-00005.safetensors" for k in (1, 2, 3, 4)]]  # layers 0-26 end in shard 4
