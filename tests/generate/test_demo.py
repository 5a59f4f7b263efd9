"""`flux2-int8 demo`: quantizes nano, draws its prompts in both precisions, writes a page that renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from flux2_int8.cli import main
from flux2_int8.demo import TASKS
from flux2_int8.nano.grammar import parse_prompt, split_scenes

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "site"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_demo_writes_every_image_the_page_shows(demo_folder):
    page = (demo_folder / "index.html").read_text()
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 3 * len(TASKS)
    for source in sources:
        assert Image.open(demo_folder / source).size == (128, 128)
    for task in TASKS:
        assert task.prompt in page
    assert (demo_folder / "nano-int8.safetensors").stat().st_size > 0


def test_demo_results_compare_bf16_and_int8_with_the_same_seeds(demo_folder):
    results = json.loads((demo_folder / "results.json").read_text())
    assert [r["task"]["name"] for r in results["tasks"]] == [t.name for t in TASKS]
    for result in results["tasks"]:
        bf16 = Image.open(demo_folder / result["bf16_file"])
        int8 = Image.open(demo_folder / result["int8_file"])
        assert bf16.text["seed"] == int8.text["seed"] == str(result["task"]["seed"])
        assert int8.text["checkpoint"] == "nano-int8.safetensors"
        assert 25.0 < result["psnr_db"] < float("inf")  # measured 33-44 dB per prompt (8 calibration prompts)
        assert result["read_bf16"] and result["read_int8"]  # what the scorer saw
        assert result["bf16_seconds"] > 0 and result["int8_seconds"] > 0
    assert results["int8_checkpoint_bytes"] < results["bf16_checkpoint_bytes"]


def test_demo_names_which_prompts_nano_never_trained_on(demo_folder):
    held_out = set(split_scenes()[1])
    results = json.loads((demo_folder / "results.json").read_text())
    for result in results["tasks"]:
        assert result["held_out"] == (parse_prompt(result["task"]["prompt"]) in held_out)
        assert result["task"]["name"].startswith("held-out" if result["held_out"] else "trained")


def test_demo_refuses_a_bad_size_before_building_anything(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "100"]) == 2
    assert "a multiple of 16" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")), reason="no Chromium installed")
def test_index_renders_in_headless_chromium(demo_folder, tmp_path):
    shot = tmp_path / "shot.png"
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "scripts" / "screenshot_demo.py"), str(demo_folder), "--out", str(shot), "--window-size", "1200,900"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 900)
    assert len(image.resize((120, 90)).getcolors(maxcolors=120 * 90)) > 50  # a rendered page with images, not a blank one
