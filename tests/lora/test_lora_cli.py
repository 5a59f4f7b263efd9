"""`flux2-int8 generate --lora PATH[:SCALE] [--fuse-lora]` on the tiny INT8 pipeline, and its refusals."""

from __future__ import annotations

import json

import pytest
from lokr_helpers import write_lokr
from lora_helpers import draw_lora, write_lora
from PIL import Image

from flux2_int8.cli import main

SMALL = ["--steps", "2", "--width", "64", "--height", "64", "--device", "cpu", "--dtype", "float32", "--prompt", "A red cube"]


@pytest.mark.parametrize("fuse", [False, True])
def test_generate_with_two_loras(tmp_path, capsys, tiny_base, tiny_config, int8_file, fuse):
    kohya, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, seed=1, size=0.2), name="kohya")
    toolkit, _ = write_lora("ai-toolkit", tmp_path, draw_lora(tiny_config, seed=2, size=0.2), name="toolkit")
    args = ["generate", "--base", str(tiny_base), "--transformer", str(int8_file[0]), *SMALL, "--lora", f"{kohya}:0.7", "--lora", str(toolkit)]
    out = tmp_path / ("fused.png" if fuse else "unfused.png")
    code = main([*args, *(["--fuse-lora"] if fuse else []), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    image = Image.open(out)
    assert json.loads(image.text["loras"]) == [f"{kohya}:0.7", str(toolkit)]
    assert image.text["lora_mode"] == ("fused" if fuse else "unfused")


@pytest.mark.parametrize("fuse", [False, True])
def test_generate_with_an_ai_toolkit_lokr(tmp_path, capsys, tiny_base, tiny_config, int8_file, fuse):
    lokr, _ = write_lokr("ai-toolkit", tmp_path, tiny_config, size=0.2)  # targets the fused q/k/v: loading fuses them
    out = tmp_path / "lokr.png"
    args = ["generate", "--base", str(tiny_base), "--transformer", str(int8_file[0]), *SMALL, "--lora", f"{lokr}:0.8", "--out", str(out)]
    code = main([*args, *(["--fuse-lora"] if fuse else [])])
    assert code == 0, capsys.readouterr().err
    assert json.loads(Image.open(out).text["loras"]) == [f"{lokr}:0.8"]


def test_generate_refuses_a_lora_of_another_size(tmp_path, capsys, tiny_base, tiny_config, int8_file):
    wider, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, hidden_override=64), name="klein-9b-style")
    code = main(["generate", "--base", str(tiny_base), "--transformer", str(int8_file[0]), *SMALL, "--lora", str(wider), "--out", str(tmp_path / "x.png")])
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error: ")]
    assert code == 2 and len(error_lines) == 1
    err = error_lines[0]
    assert "klein-9b-style.safetensors: does not fit this transformer: layer 'transformer_blocks.0.attn.to_q'" in err
    assert not (tmp_path / "x.png").exists()


def test_generate_refuses_a_missing_lora_before_loading(tmp_path, capsys, tiny_base, int8_file):
    code = main(["generate", "--base", str(tiny_base), "--transformer", str(int8_file[0]), *SMALL, "--lora", str(tmp_path / "nope.safetensors:0.5"), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.safetensors" in err and "no such LoRA file" in err


def test_a_lora_passed_as_transformer_is_named(tmp_path, capsys, tiny_base, tiny_config):
    lora, _ = write_lora("ai-toolkit", tmp_path, draw_lora(tiny_config, rank=16))
    code = main(["generate", "--base", str(tiny_base), "--transformer", str(lora), *SMALL, "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "a LoRA adapter (BFL/ai-toolkit" in err and "rank 16" in err


def test_lora_with_ray_is_refused_before_any_cluster(tmp_path, capsys, tiny_base, tiny_config):
    lora, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A red cube\n")
    code = main(["generate", "--base", str(tiny_base), "--prompts", str(prompts), "--lora", str(lora), "--ray", "local", "--out", str(tmp_path / "out")])
    assert code == 2 and "--lora does not go with --ray yet" in capsys.readouterr().err
