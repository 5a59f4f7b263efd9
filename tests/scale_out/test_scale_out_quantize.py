"""`quantize --ray local --workers 2` and `generate --prompts --ray`: the single-process files, bit for bit."""

from __future__ import annotations

import json
import struct

import pytest
from cli_helpers import run_cli

# 6 samples (two of each task, with generated reference images), 2 of the 4 steps, 64x64.
TINY_QUANTIZE = ("--samples", "6", "--steps", "2", "--resolution", "64", "--device", "cpu", "--dtype", "float32", "--quiet", "--json")


def _quantize(tiny_base, out, *extra) -> dict:
    """The run's statistics, less the time it took."""
    code, stdout, stderr = run_cli("quantize", "--base", str(tiny_base), "--out", str(out), *TINY_QUANTIZE, *extra)
    assert code == 0, stderr
    statistics = json.loads(stdout)["statistics"]
    del statistics["seconds"]
    return statistics


def _content(path):
    """The header (as JSON) and every tensor byte: all of a file but the order of its metadata keys,
    which safetensors shuffles on every write (a Rust HashMap), even twice in one process."""
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + length]), data[8 + length :]


@pytest.mark.parametrize("recipe", [("--calibration", "percentile:99.9", "--text-encoder")], ids=["percentile-text-encoder"])
def test_ray_quantize_writes_the_single_process_checkpoint(ray_session, tmp_path, tiny_base, recipe):
    """Percentile calibration merges the fixed-bin histograms; the text encoder adds a second observer."""
    single, ray = tmp_path / "single" / "q.safetensors", tmp_path / "ray" / "q.safetensors"
    said = _quantize(tiny_base, single, *recipe)
    said_on_ray = _quantize(tiny_base, ray, *recipe, "--ray", "local", "--workers", "2")
    encoder = "q-text-encoder.safetensors"
    for name in ("q.safetensors", encoder):
        assert _content(ray.parent / name) == _content(single.parent / name)
    # The same ranges, samples, transformer calls and reference images are reported.
    assert said_on_ray == said


def test_ray_generate_writes_the_single_process_images(ray_session, tmp_path, tiny_base):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A red cube on a blue table\nA green cat on a sofa\nA yellow car\n")
    common = ("generate", "--base", str(tiny_base), "--prompts", str(prompts), "--num-images", "2", "--steps", "2", "--width", "64", "--height", "64", "--dtype", "float32", "--device", "cpu")
    code, _, stderr = run_cli(*common, "--out", str(tmp_path / "single"))
    assert code == 0, stderr
    code, stdout, stderr = run_cli(*common, "--out", str(tmp_path / "ray"), "--ray", "local", "--workers", "2")
    assert code == 0, stderr
    single = {p.name: p.read_bytes() for p in (tmp_path / "single").glob("*.png")}
    assert len(single) == 6
    assert {p.name: p.read_bytes() for p in (tmp_path / "ray").glob("*.png")} == single
    assert stdout.startswith("6 image(s) on 2 worker(s)")


def test_a_mistake_met_in_a_worker_is_one_error_line(ray_session, tmp_path, tiny_base):
    """A checkpoint only the workers open (the driver loads nothing for generate --ray) fails as it would here."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A red cube\n")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    code, _, stderr = run_cli("generate", "--base", str(tiny_base), "--transformer", str(garbage), "--prompts", str(prompts), "--steps", "2", "--width", "64", "--height", "64", "--dtype", "float32", "--device", "cpu", "--out", str(tmp_path / "out"), "--ray", "local", "--workers", "1")
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {garbage}: not a safetensors file: its first 8 bytes are not a plausible header length"], stderr[-2000:]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
