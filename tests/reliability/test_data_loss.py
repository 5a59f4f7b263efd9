"""Issue 23, class 1: no command or shipped script loses a user's file, whatever path it is given.

Every path a run reads is an input (LoRAs with or without `:SCALE`, suites, resume and
averaging folders); every path it writes (side files, staging folders) goes through
`flux2_int8.outputs`; a file or folder that is not ours is replaced only with
`--overwrite`. Each case compares the digest of every user file before and after.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from reliability_helpers import TINY_GENERATE, TINY_QUANTIZE, copy_tiny_base, leftovers, run_cli, run_script, snapshot, write_tiny_lora
from safetensors.torch import save_file

import torch

EVAL_TINY = ("--limit", "1", "--width", "64", "--height", "64", "--steps", "1", "--dtype", "float32", "--device", "cpu", "--metrics", "psnr")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return copy_tiny_base(tmp_path_factory.mktemp("data-loss") / "base")


def user_files(root: Path) -> Path:
    """A folder of someone's files: notes, a picture, a safetensors file that is not ours."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("my notes")
    Image.new("RGB", (64, 64), "red").save(root / "photo.png")
    save_file({"w": torch.ones(2)}, root / "mine.safetensors")
    return root


# --- quantize: its outputs and the side file named after them ----------------------------------


@pytest.mark.parametrize(
    ("out", "side", "extra"),
    [
        ("notes.safetensors", None, ()),  # a file that is not a checkpoint at all
        ("mine.safetensors", None, ()),  # a safetensors file someone else wrote
        ("b.safetensors", "b-text-encoder.safetensors", ("--text-encoder",)),  # the side file, a name never typed
        ("q", "q-text-encoder.safetensors", ("--text-encoder", "--format", "diffusers")),
        ("c.safetensors", "c-text-encoder.safetensors", ("--text-encoder", "--format", "comfy")),
    ],
)
def test_quantize_never_replaces_a_file_that_is_not_its_own(tmp_path, base, out, side, extra):
    folder = user_files(tmp_path / "work")
    (folder / "notes.safetensors").write_text("not a checkpoint")
    if side is not None:
        (folder / side).write_text("an unrelated file that happens to have this name")
    before = snapshot(folder)
    run_cli("quantize", "--base", base, "--out", folder / out, *extra, *TINY_QUANTIZE).assert_one_error_line(2, "--overwrite")
    assert snapshot(folder) == before
    assert not leftovers(tmp_path)


def test_quantize_replaces_its_own_outputs_freely_and_others_only_with_overwrite(tmp_path, base):
    out = tmp_path / "q.safetensors"
    assert run_cli("quantize", "--base", base, "--out", out, "--text-encoder", *TINY_QUANTIZE).code == 0
    assert run_cli("quantize", "--base", base, "--out", out, "--text-encoder", "--seed", "1", *TINY_QUANTIZE).code == 0  # ours: rerun in place
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not a checkpoint")
    assert run_cli("quantize", "--base", base, "--out", notes, "--overwrite", *TINY_QUANTIZE).code == 0  # asked for
    assert notes.read_bytes() != b"not a checkpoint"


# --- generate: a LoRA given with a scale is still an input; a user's picture is not replaced ---


@pytest.mark.parametrize("lora", ["{f}:0.5", "{f}:1", "{f}"])
def test_generate_never_writes_over_its_lora(tmp_path, base, lora):
    folder = user_files(tmp_path / "work")
    before = snapshot(folder)
    target = folder / "photo.png"
    spec = lora.format(f=target)
    run_cli("generate", "--base", base, "--prompt", "a cube", "--lora", spec, "--out", target, *TINY_GENERATE).assert_one_error_line(2, "input")
    assert snapshot(folder) == before


def test_generate_does_not_replace_a_picture_it_did_not_make(tmp_path, base):
    folder = user_files(tmp_path / "work")
    before = snapshot(folder)
    run_cli("generate", "--base", base, "--prompt", "a cube", "--out", folder / "photo.png", *TINY_GENERATE).assert_one_error_line(2, "--overwrite")
    assert snapshot(folder) == before
    made = tmp_path / "made.png"
    for _ in range(2):  # its own picture is replaced on a rerun
        assert run_cli("generate", "--base", base, "--prompt", "a cube", "--out", made, *TINY_GENERATE).code == 0


# --- eval: every input, LoRA and suite included, is protected even with --overwrite ------------


@pytest.mark.parametrize("option", ["--lora", "--lora-scaled", "--suite"])
def test_eval_never_writes_over_an_input_in_its_folder(tmp_path, base, option):
    out = user_files(tmp_path / "E")
    write_tiny_lora(out / "metrics.json")  # a LoRA under a name eval writes
    write_tiny_lora(out / "mine.safetensors")
    (out / "suite.jsonl").write_text(json.dumps({"id": "t2i-cube", "prompt": "a cube", "seed": 0}) + "\n")
    before = snapshot(out)
    given = {"--lora": ("--lora", out / "metrics.json"), "--lora-scaled": ("--lora", f"{out / 'mine.safetensors'}:0.5"), "--suite": ("--suite", out / "suite.jsonl")}[option]
    candidate = f"copy={base / 'transformer-bf16.safetensors'}"
    run_cli("eval", "--base", base, "--candidate", candidate, "--out", out, "--overwrite", *given, *EVAL_TINY).assert_one_error_line(2, "input")
    assert snapshot(out) == before


# --- the nano scripts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    from flux2_int8.nano import nano_folder

    root = tmp_path_factory.mktemp("nano-runs")
    return tuple(Path(shutil.copytree(nano_folder(), root / name)) for name in ("run1", "run2"))


def test_average_nano_never_deletes_a_folder_or_an_input(tmp_path, runs):
    run1, run2 = runs
    mydocs = user_files(tmp_path / "mydocs")
    staging = user_files(tmp_path / "soup.partial")  # a staging-like name that is the user's
    before = snapshot(mydocs, staging, run1, run2)
    run_script("average_nano.py", "--out", mydocs, run1, run2).assert_one_error_line(2, "did not write")
    run_script("average_nano.py", "--out", run1, run1, run2).assert_one_error_line(2, "input")
    run_script("average_nano.py", "--out", run2 / "transformer", run1, run2).assert_one_error_line(2, "input")
    run_script("average_nano.py", "--out", mydocs / "notes.txt", run1, run2).assert_one_error_line(2, "is a file")
    assert run_script("average_nano.py", "--out", tmp_path / "soup", run1, run2).code == 0
    assert run_script("average_nano.py", "--out", tmp_path / "soup", run1, run2).code == 0  # its own: replaced
    assert snapshot(mydocs, staging, run1, run2) == before
    assert not leftovers(tmp_path / "soup")


def test_train_nano_never_deletes_a_folder_or_its_resumed_run(tmp_path, runs):
    run1, _ = runs
    mydocs = user_files(tmp_path / "mydocs")
    before = snapshot(mydocs, run1)
    run_script("train_nano.py", "--out", mydocs).assert_one_error_line(2, "did not write")
    run_script("train_nano.py", "--out", run1, "--resume", run1).assert_one_error_line(2, "input")
    run_script("train_nano.py", "--out", tmp_path / "new", "--resume", run1, "--log", run1 / "model_index.json").assert_one_error_line(2, "input")
    run_script("train_nano.py", "--out", mydocs / "notes.txt").assert_one_error_line(2, "is a file")
    assert snapshot(mydocs, run1) == before
    assert not (tmp_path / "new").exists()
