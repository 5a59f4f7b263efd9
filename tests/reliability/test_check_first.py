"""Item 5 of issue 14: generate and eval check every input before loading a model or generating.

The base used here has no VAE weights: any error that mentions the prompt, a line or a
checkpoint instead of the VAE was raised before the pipeline loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import TINY_GENERATE, copy_tiny_base, run_cli

from flux2_int8.generate import read_prompts_file

BOM = "\ufeff"


@pytest.fixture(scope="module")
def unloadable_base(tmp_path_factory) -> Path:
    base = copy_tiny_base(tmp_path_factory.mktemp("check-first") / "base")
    (base / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    return base


def generate(base: Path, out: Path, *args: str):
    return run_cli("generate", "--base", base, "--out", out, *TINY_GENERATE, *args)


def test_the_unloadable_base_really_fails_at_load(unloadable_base, tmp_path):
    generate(unloadable_base, tmp_path / "out", "--prompt", "a cube").assert_one_error_line(2)
    assert not (tmp_path / "out").exists()


def test_a_prompt_with_undecodable_bytes_is_refused_before_loading(unloadable_base, tmp_path):
    # Python hands undecodable argv bytes to the program as lone surrogates (surrogateescape).
    generate(unloadable_base, tmp_path / "out", "--prompt", "a \udcff\udcfe cube").assert_one_error_line(2, "--prompt", "UTF-8")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"prompt": "a cube", "seed": ' + "7" * 5001 + "}", ("line 2", "not valid JSON")),
        ('{"prompt": "a cube", "seed": -1}', ("line 2", "seed")),
        ('{"prompt": "a cube", "seed": 9223372036854775808}', ("line 2", "seed")),
        ('{"prompt": "a cube", "seed": 1.5}', ("line 2", "seed")),
        ('{"prompt": {"text": "a cube"}}', ("line 2", "'prompt' must be a string")),
        ('{"prompt": "a cube", "images": [["a.png"]]}', ("line 2", "'images'")),
        ('{"prompt": ' + "[" * 100_000 + "}", ("line 2", "nested too deeply")),
        ('{"prompt": "a cube", "sede": 3}', ("line 2", "unknown key")),
    ],
)
def test_bad_jsonl_values_are_refused_before_loading(unloadable_base, tmp_path, line, words):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n' + line + "\n")
    generate(unloadable_base, tmp_path / "out", "--prompts", str(prompts)).assert_one_error_line(2, str(prompts), *words)


def test_a_prompts_file_that_is_not_utf8_is_refused(unloadable_base, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("a cube\n".encode("utf-16"))
    generate(unloadable_base, tmp_path / "out", "--prompts", str(prompts)).assert_one_error_line(2, str(prompts), "UTF-8")


def test_a_byte_order_mark_is_not_part_of_the_prompt(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text(BOM + "a red cube\n" + BOM + "a blue cube\n", encoding="utf-8")
    assert [r.prompt for r in read_prompts_file(plain)] == ["a red cube", "a blue cube"]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(BOM + json.dumps({"prompt": "a cube", "seed": 4}) + "\n", encoding="utf-8")
    (request,) = read_prompts_file(jsonl)
    assert (request.prompt, request.seed) == ("a cube", 4)


def test_eval_reads_every_checkpoint_header_before_generating(unloadable_base, tmp_path):
    good = unloadable_base / "transformer-bf16.safetensors"
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    out = tmp_path / "e"
    outcome = run_cli("eval", "--base", unloadable_base, "--candidate", f"good={good}", "--candidate", f"cut={truncated}", "--out", out, "--metrics", "psnr", "--limit", "1", "--width", "64", "--height", "64")
    outcome.assert_one_error_line(2, str(truncated), "truncated")
    assert not (out / "images").exists()


def test_eval_reads_every_suite_line_before_generating(unloadable_base, tmp_path):
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"id": "a", "prompt": "a cube"}) + "\n" + json.dumps({"id": "b", "prompt": "x", "seed": "7"}) + "\n")
    out = tmp_path / "e"
    outcome = run_cli("eval", "--base", unloadable_base, "--candidate", str(unloadable_base / "transformer-bf16.safetensors"), "--suite", suite, "--out", out, "--metrics", "psnr")
    outcome.assert_one_error_line(2, f"{suite} line 2", "seed")
    assert not out.exists()
