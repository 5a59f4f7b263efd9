"""`flux2-int8 eval --lora`: the LoRA'd INT8 model scored against the LoRA'd BF16 model."""

from __future__ import annotations

import json

import numpy as np
from lora_helpers import draw_lora, write_lora
from PIL import Image

from flux2_int8.cli import main


def _args(base, candidate, suite, out, *extra):
    return ["eval", "--base", str(base), "--candidate", f"int8={candidate}", "--suite", str(suite), "--out", str(out),
            "--width", "64", "--height", "64", "--steps", "2", "--dtype", "float32", "--device", "cpu", "--metrics", "psnr", *extra]  # fmt: skip


def test_eval_applies_the_lora_to_reference_and_candidate_and_records_it(tmp_path, capsys, tiny_base, tiny_config, int8_file):
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"id": "t2i-cube", "prompt": "A red cube", "seed": 3}) + "\n")
    lora, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, seed=11))
    plain, styled = tmp_path / "plain", tmp_path / "styled"
    assert main(_args(tiny_base, int8_file[0], suite, plain)) == 0
    assert main(_args(tiny_base, int8_file[0], suite, styled, "--lora", f"{lora}:0.8")) == 0
    assert json.loads((styled / "run.json").read_text())["loras"] == [f"{lora}:0.8"]
    for model in ("bf16", "int8"):
        (without,), (with_lora,) = (sorted((folder / "images" / model).glob("*.png")) for folder in (plain, styled))
        assert not np.array_equal(np.asarray(Image.open(without)), np.asarray(Image.open(with_lora))), model
    capsys.readouterr()
    # the folder holds LoRA'd images: asking for other LoRAs there is refused
    assert main(_args(tiny_base, int8_file[0], suite, styled)) == 2
    assert "loras" in capsys.readouterr().err
