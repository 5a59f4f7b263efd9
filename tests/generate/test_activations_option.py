"""`activations` through load_pipeline and the CLI: one spelling everywhere, dynamic INT8 generates."""

from __future__ import annotations

import numpy as np
from PIL import Image

from flux2_int8 import Int8Linear, load_pipeline
from flux2_int8.cli import main
from flux2_int8.commands.options import ACTIVATIONS
from flux2_int8.loading.transformer import ACTIVATION_CHOICES


def test_the_cli_spells_the_library_choices():
    assert ACTIVATIONS == ACTIVATION_CHOICES


def test_load_pipeline_passes_the_choice_to_the_transformer(tiny_base, int8_checkpoint):
    pipeline = load_pipeline(tiny_base, transformer=int8_checkpoint, device="cpu", activations="dynamic")
    layers = [m for m in pipeline.transformer.modules() if isinstance(m, Int8Linear)]
    assert layers and all(layer.activations == "dynamic" for layer in layers)


def test_generate_runs_dynamic_activations_from_the_command_line(tiny_base, int8_checkpoint, tmp_path):
    out = tmp_path / "dynamic.png"
    arguments = ["generate", "--base", str(tiny_base), "--transformer", str(int8_checkpoint), "--prompt", "a red cube", "--steps", "2", "--width", "64", "--height", "64", "--device", "cpu", "--out"]
    assert main([*arguments, str(out), "--activations", "dynamic"]) == 0
    assert main([*arguments, str(tmp_path / "static.png"), "--activations", "static"]) == 0
    dynamic, static = (np.asarray(Image.open(path)) for path in (out, tmp_path / "static.png"))
    assert dynamic.shape == (64, 64, 3) and not np.array_equal(dynamic, static)
