"""`bench --activations static,dynamic`: one run times both, a row each, on the model each names."""

from __future__ import annotations

import json

from torch import nn

from flux2_int8.bench import pipeline_bench
from flux2_int8.bench.random_weights import random_transformer
from flux2_int8.cli import main
from flux2_int8.int8 import Int8Linear
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG


def test_static_and_dynamic_rows_come_from_one_run_on_matching_models(tmp_path, monkeypatch):
    built: list[tuple[str, nn.Module]] = []
    original = pipeline_bench._BuiltInSource.transformer

    def capture(self, fmt, activations="auto"):  # type: ignore[no-untyped-def]
        built.append((activations, original(self, fmt, activations)))
        return built[-1][1]

    monkeypatch.setattr(pipeline_bench._BuiltInSource, "transformer", capture)
    command = ["bench", "--base", "tiny", "--formats", "bf16,int8", "--activations", "static,dynamic", "--compile", "off", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]
    assert main(command) == 0
    document = json.loads((tmp_path / "bench-tiny.json").read_text())
    labels = [row["label"] for row in document["summary"]]
    assert labels == ["bf16", "int8 (static)", "int8 (dynamic)"]
    assert [row["activations"] for row in document["summary"]] == ["auto", "static", "dynamic"]
    modes = {activations: {m.activations for m in model.modules() if isinstance(m, Int8Linear)} for activations, model in built if activations != "auto"}
    assert modes == {"static": {"static"}, "dynamic": {"dynamic"}}
    assert "int8 (dynamic)" in (tmp_path / "bench-tiny.md").read_text()


def test_random_weights_build_dynamic_layers_without_input_scales():
    model = random_transformer(TINY_TRANSFORMER_CONFIG, "int8", "cpu", activations="dynamic")
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert layers and all(layer.input_scale is None and layer.activations == "dynamic" for layer in layers)
