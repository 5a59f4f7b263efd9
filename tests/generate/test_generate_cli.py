"""`flux2-int8 generate`: the three tasks in BF16 and INT8, batches, PNG metadata, every bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from flux2_int8.cli import main

SMALL = ["--steps", "2", "--width", "64", "--height", "64", "--device", "cpu"]


def generate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("references", [0, 1, 2], ids=["text-to-image", "edit", "composition"])
def test_each_task_writes_a_png_with_its_settings(precision, references, tmp_path, capsys, tiny_base, int8_checkpoint, reference_files):
    images = [arg for path in reference_files[:references] for arg in ("--image", str(path))]
    transformer = ["--transformer", str(int8_checkpoint)] if precision == "int8" else []
    code, out, err = generate(capsys, "--base", str(tiny_base), *transformer, "--prompt", "A red cube", *images, "--seed", "7", *SMALL, "--out", str(tmp_path / "out"))
    assert code == 0, err
    (written,) = pngs(tmp_path / "out")
    image = Image.open(written)
    assert image.size == (64, 64)
    assert image.text["prompt"] == "A red cube" and image.text["seed"] == "7" and image.text["steps"] == "2"
    assert image.text["guidance"] == "1.0" and image.text["base"] == str(tiny_base)
    assert image.text["checkpoint"] == (str(int8_checkpoint) if precision == "int8" else "the base's transformer")
    assert image.text["text_encoder"] == "the base's text encoder"
    assert json.loads(image.text["references"]) == [p.name for p in reference_files[:references]]
    assert f"{written}" in out and " s per image" in out


def test_prompts_file_runs_a_batch_with_plain_and_jsonl_lines(tmp_path, capsys, tiny_base, int8_checkpoint, int8_text_encoder, reference_files, monkeypatch):
    import flux2_int8.generate

    loads = []
    real_load = flux2_int8.generate.load_pipeline
    monkeypatch.setattr(flux2_int8.generate, "load_pipeline", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    prompts = tmp_path / "prompts.txt"
    square, circle = reference_files
    lines = ["A red cube", "", json.dumps({"prompt": "Make it yellow", "images": [str(square)], "seed": 5}), json.dumps({"prompt": "Put them together", "images": [str(square), str(circle)]})]
    prompts.write_text("\n".join(lines) + "\n")
    code, out, err = generate(capsys, "--base", str(tiny_base), "--transformer", str(int8_checkpoint), "--text-encoder", str(int8_text_encoder), "--prompts", str(prompts), "--seed", "2", "--num-images", "2", *SMALL, "--out", str(tmp_path / "batch"))
    assert code == 0, err
    assert len(loads) == 1  # the model loads once for the whole file
    texts = [Image.open(p).text for p in pngs(tmp_path / "batch")]
    assert [(t["prompt"], t["seed"], json.loads(t["references"])) for t in texts] == [
        ("A red cube", "2", []),
        ("A red cube", "3", []),
        ("Make it yellow", "5", ["square.png"]),
        ("Make it yellow", "6", ["square.png"]),
        ("Put them together", "2", ["square.png", "circle.png"]),
        ("Put them together", "3", ["square.png", "circle.png"]),
    ]
    assert all(t["text_encoder"] == str(int8_text_encoder) for t in texts)
    assert out.count(" s\n") == 6 and "6 image(s)" in out


def test_png_out_path_names_the_file(tmp_path, capsys, tiny_base):
    code, _, err = generate(capsys, "--base", str(tiny_base), "--prompt", "A red cube", *SMALL, "--out", str(tmp_path / "new" / "cube.png"))
    assert code == 0, err
    assert pngs(tmp_path / "new") == [tmp_path / "new" / "cube.png"]


@pytest.fixture
def no_model_load(monkeypatch):
    """Bad inputs must be refused before any model loads."""
    import flux2_int8.generate

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(flux2_int8.generate, "load_pipeline", refuse)


# name -> (arguments, with {tmp} the test's folder and {ref} a good reference; expected message pattern)
BAD_INPUTS: dict[str, tuple[list[str], str]] = {
    "missing reference": (["--prompt", "x", "--image", "{tmp}/missing.png"], "missing.png: no such file"),
    "unreadable reference": (["--prompt", "x", "--image", "{tmp}/not-an-image.png"], "cannot be read as an image"),
    "reference under 64 px": (["--prompt", "x", "--image", "{tmp}/small.png"], "is 32x80; the model needs at least 64 px"),
    "too many references": (["--prompt", "x", *["--image", "{ref}"] * 5], r"5 reference images given; FLUX.2 \[klein\] accepts at most 4"),
    "width not a multiple of 16": (["--prompt", "x", "--width", "100"], "--width: '100' is not an integer from 64 to 2048 px, a multiple of 16"),
    "height under 64": (["--prompt", "x", "--height", "48"], "--height: '48' is not an integer from 64 to 2048 px, a multiple of 16"),
    "zero steps": (["--prompt", "x", "--steps", "0"], "--steps: '0' is not an integer from 1 to 1000"),
    "negative steps": (["--prompt", "x", "--steps", "-3"], "--steps: '-3' is not an integer from 1 to 1000"),
    "zero images": (["--prompt", "x", "--num-images", "0"], "--num-images: '0' is not an integer from 1 to 10000"),
    "negative guidance": (["--prompt", "x", "--guidance", "-1"], "--guidance: '-1' is not a finite number from 0 to 100"),
    "empty prompt": (["--prompt", "  "], "the prompt is empty"),
    "negative seed": (["--prompt", "x", "--seed", "-1"], r"--seed: '-1' is not an integer from 0 to 2\*\*63-1"),
    "output under a file": (["--prompt", "x", "--out", "{tmp}/a-file/out"], "a-file is a file, not a folder"),
    "png output is a folder": (["--prompt", "x", "--out", "{tmp}/taken.png"], "taken.png: it is a folder"),
    "missing prompts file": (["--prompts", "{tmp}/none.txt"], "none.txt: no such file"),
    "broken JSONL line": (["--prompts", "{tmp}/bad.jsonl"], "bad.jsonl line 2: not valid JSON"),
    "unknown JSONL key": (["--prompts", "{tmp}/unknown-key.jsonl"], "line 1: unknown key 'negative'"),
    "image with prompts file": (["--prompts", "{tmp}/bad.jsonl", "--image", "{ref}"], "--image goes with --prompt"),
}


def write_bad_files(tmp: Path) -> None:
    (tmp / "not-an-image.png").write_text("hello")
    Image.new("RGB", (32, 80)).save(tmp / "small.png")
    (tmp / "a-file").write_text("")
    (tmp / "taken.png").mkdir()
    (tmp / "bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": "broken",\n')
    (tmp / "unknown-key.jsonl").write_text('{"prompt": "ok", "negative": "x"}\n')


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_exits_2_before_loading_and_writes_nothing(name, tmp_path, capsys, tiny_base, reference_files, no_model_load):
    write_bad_files(tmp_path)
    template, expected = BAD_INPUTS[name]
    arguments = [a.format(tmp=tmp_path, ref=reference_files[0]) for a in template]
    out = [] if "--out" in arguments else ["--out", str(tmp_path / "out")]
    code, _, err = generate(capsys, "--base", str(tiny_base), *out, *arguments)
    assert code == 2
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(expected, err), err
    assert not (tmp_path / "out").exists()


def test_checkpoint_for_another_size_exits_2(tmp_path, capsys, tiny_base, sparse_9b_checkpoint):
    code, _, err = generate(capsys, "--base", str(tiny_base), "--transformer", str(sparse_9b_checkpoint), "--prompt", "x", *SMALL, "--out", str(tmp_path / "out"))
    assert code == 2 and "9B-size transformer" in err and pngs(tmp_path / "out") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder_exits_2(tmp_path, capsys, tiny_base, no_model_load):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = generate(capsys, "--base", str(tiny_base), "--prompt", "x", "--out", str(locked))
    assert code == 2 and "is not writable" in err


def test_variant_offline_with_nothing_cached_fails_with_one_clear_line(tmp_path):
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    environment.pop("HF_HUB_CACHE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "flux2_int8.cli", "generate", "--base", "klein-9b", "--prompt", "x", "--out", str(tmp_path / "out")],
        check=False, capture_output=True, text=True, env=environment, timeout=120,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "hf download black-forest-labs/FLUX.2-klein-9B" in completed.stderr and "HF_HUB_OFFLINE is set" in completed.stderr
    assert not (tmp_path / "out").exists()
