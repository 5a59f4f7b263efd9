"""Issue 23, class 6: every input of a run is checked before anything is claimed or computed.

A refused `eval` must leave no folder (no run.json that would then refuse the corrected
command); `generate` and `quantize` make no output folder or file before their inputs
(LoRAs, patterns) are known to be good.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from reliability_helpers import TINY_GENERATE, TINY_QUANTIZE, copy_tiny_base, run_cli, write_tiny_lora

EVAL_TINY = ("--limit", "1", "--width", "64", "--height", "64", "--steps", "1", "--dtype", "float32", "--device", "cpu", "--metrics", "psnr")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return copy_tiny_base(tmp_path_factory.mktemp("check-order") / "base")


def _suite(folder: Path, **case) -> Path:
    path = folder / "suite.jsonl"
    path.write_text(json.dumps({"id": "case", "prompt": "a cube", "seed": 0, **case}) + "\n")
    return path


def _eval(base: Path, out: Path, *extra: object):
    return run_cli("eval", "--base", base, "--candidate", f"copy={base / 'transformer-bf16.safetensors'}", "--out", out, *extra, *EVAL_TINY)


@pytest.mark.parametrize(
    "mistake",
    [
        "a LoRA that is not there (typo:abc)",
        "a LoRA for another model size",
        "a LoRA that is not a LoRA",
        "an unreadable input image",
        "an input image that is not an image",
        "a candidate of another size",
    ],
)
def test_eval_refuses_before_it_claims_its_folder(tmp_path, base, mistake):
    from flux2_int8.nano import nano_folder

    out = tmp_path / "E"
    picture = tmp_path / "input.png"
    picture.write_text("not a picture")
    extra: tuple[object, ...] = {
        "a LoRA that is not there (typo:abc)": ("--lora", "typo:abc"),
        "a LoRA for another model size": ("--lora", f"{write_tiny_lora(tmp_path / 'wide.safetensors', hidden=64)}:0.5"),
        "a LoRA that is not a LoRA": ("--lora", base / "transformer-bf16.safetensors"),
        "an unreadable input image": ("--suite", _suite(tmp_path, input_images=["missing.png"])),
        "an input image that is not an image": ("--suite", _suite(tmp_path, input_images=[picture.name])),
        "a candidate of another size": ("--candidate", f"nano={nano_folder() / 'transformer'}"),
    }[mistake]
    _eval(base, out, *extra).assert_one_error_line(2)
    assert not out.exists(), sorted(out.rglob("*"))


def test_after_a_refused_lora_the_corrected_eval_runs(tmp_path, base):
    out = tmp_path / "E"
    _eval(base, out, "--lora", "typo:abc").assert_one_error_line(2, "typo")
    lora = write_tiny_lora(tmp_path / "style.safetensors")
    assert _eval(base, out, "--lora", f"{lora}:0.5").code == 0
    assert json.loads((out / "run.json").read_text())["loras"] == [f"{lora}:0.5"]


def test_generate_claims_no_folder_for_a_lora_that_does_not_fit(tmp_path, base):
    out = tmp_path / "images"
    wide = write_tiny_lora(tmp_path / "wide.safetensors", hidden=64)
    run_cli("generate", "--base", base, "--prompt", "a cube", "--lora", wide, "--out", out, *TINY_GENERATE).assert_one_error_line(2, "does not fit")
    assert not out.exists()


def test_quantize_writes_nothing_for_a_pattern_that_matches_nothing(tmp_path, base):
    out = tmp_path / "q"
    run_cli("quantize", "--base", base, "--out", out, "--format", "diffusers", "--keep", "no_such_layer*", *TINY_QUANTIZE).assert_one_error_line(2, "matches no linear")
    assert list(tmp_path.iterdir()) == []
    shutil.rmtree(tmp_path, ignore_errors=True)
