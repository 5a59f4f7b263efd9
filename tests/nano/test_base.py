"""`--base nano`: the shipped pipeline resolves, samples at 128 px with 32 text tokens, quantizes and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from flux2_int8.cli import main
from flux2_int8.generate import load_pipeline, sampling_defaults
from flux2_int8.generate.hub import parse_base
from flux2_int8.nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, nano_folder
from flux2_int8.nano.grammar import split_scenes
from flux2_int8.quantization.prompts import load_prompts
from flux2_int8.tiny import tiny_pipeline_cache


@pytest.fixture(scope="module")
def nano_int8(tmp_path_factory) -> Path:
    """nano's transformer quantized by the CLI, calibrated on a few of its training prompts."""
    out = tmp_path_factory.mktemp("quantize") / "nano-int8.safetensors"
    assert main(["quantize", "--base", "nano", "--out", str(out), "--samples", "4", "--device", "cpu", "--quiet"]) == 0
    return out


def test_nano_names_the_shipped_folder_which_stays_small():
    assert parse_base("nano").folder == parse_base(" NANO ").folder == nano_folder()
    weights = list(nano_folder().rglob("*.safetensors"))
    assert len(weights) == 3 and sum(f.stat().st_size for f in weights) <= 5 * 2**20


def test_sampling_defaults_are_natives_for_nano_and_klein_for_others():
    nano = sampling_defaults(load_pipeline("nano", device="cpu"))
    assert (nano.steps, nano.size, nano.max_sequence_length) == (4, NANO_SIZE, NANO_MAX_SEQUENCE_LENGTH)
    tiny = sampling_defaults(load_pipeline(tiny_pipeline_cache(), device="cpu"))
    assert (tiny.size, tiny.max_sequence_length) == (None, 512)


def test_nano_is_told_by_width_and_inputs_at_any_depth_of_single_blocks():
    from flux2_int8.nano import is_nano
    from flux2_int8.nano.model import NANO_TRANSFORMER_CONFIG
    from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG

    assert is_nano(NANO_TRANSFORMER_CONFIG) and is_nano({**NANO_TRANSFORMER_CONFIG, "num_single_layers": 6})
    assert is_nano(dict(load_pipeline("nano", device="cpu").transformer.config))
    assert not is_nano(TINY_TRANSFORMER_CONFIG) and not is_nano({**NANO_TRANSFORMER_CONFIG, "num_attention_heads": 8})


def test_generate_with_base_nano_writes_a_native_size_picture(tmp_path):
    out = tmp_path / "one.png"
    assert main(["generate", "--base", "nano", "--prompt", "two red circles on a blue background", "--out", str(out), "--device", "cpu"]) == 0
    assert Image.open(out).size == (NANO_SIZE, NANO_SIZE)


def test_nano_calibrates_on_its_training_prompts_only(nano_int8):
    prompts = load_prompts("nano")
    training, held_out = split_scenes()
    assert sorted(r.prompt for r in prompts.records.values()) == sorted(s.prompt for s in training)
    assert not {r.prompt for r in prompts.records.values()} & {s.prompt for s in held_out}
    from flux2_int8.formats.header import read_header

    recipe = json.dumps(read_header(nano_int8).metadata)
    assert "builtin:nano" in recipe and '"resolution": 128' in recipe.replace("\\", "")


def test_eval_with_base_nano_reports_int8_fidelity_and_prompt_accuracy(nano_int8, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--base", "nano", "--candidate", f"int8={nano_int8}", "--metrics", "psnr,fidelity,accuracy", "--limit", "3", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    document = json.loads((out / "metrics.json").read_text())
    assert document["suite"] == {"name": "nano", "cases": 3, "tasks": {"t2i": 3}}
    assert document["settings"]["width"] == document["settings"]["height"] == NANO_SIZE
    summary = document["summary"]["overall"]
    for model in ("bf16", "int8"):
        assert {"accuracy", "accuracy_background", "accuracy_colour", "accuracy_count", "accuracy_shape"} <= set(summary[model])
    assert summary["int8"]["psnr"] > 30 and summary["int8"]["velocity_error"] < 0.1
    assert "prompt accuracy" in (out / "report.md").read_text()
    held_out = {s.prompt for s in split_scenes()[1]}
    assert {case["prompt"] for case in document["cases"]} <= held_out
