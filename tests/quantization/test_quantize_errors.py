"""Bad inputs give one clear line and exit 2; an interrupted write leaves no output file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from quantize_helpers import TINY_ARGS, run_cli


def quantize_error(base: Path | str, out: Path, *extra: str) -> str:
    """Run a failing quantize; check exit 2, one `Error:` line, and the output left as it was."""
    existed = out.exists()
    code, stdout, stderr = run_cli("quantize", "--base", str(base), "--out", str(out), *TINY_ARGS, *extra)
    assert code == 2, (stdout, stderr)
    assert stderr.startswith("Error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert out.exists() == existed
    return stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--calibration", "median"), "Error: --calibration 'median': expected 'max' or 'percentile:P'"),
        (("--smoothquant", "1.5"), "argument --smoothquant: '1.5' is not a finite number above 0, at most 1"),
        (("--smoothquant", "0.5", "--calibration", "percentile:99"), "Error: --smoothquant needs --calibration max"),
        (("--resolution", "100"), "argument --resolution: '100' is not an integer from 64 to 2048 px, a multiple of 16"),
        (("--samples", "0"), "argument --samples: '0' is not an integer from 1 to 100000"),
        (("--samples", "1000"), "Error: --samples 1000: must be between 1 and the 768 prompts"),
        (("--steps", "5"), "Error: --steps 5: this model generates in 4 steps"),
        (("--keep", "double_blocks.9.*"), "Error: --keep 'double_blocks.9.*' matches no linear"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(tmp_path, tiny_base, extra, message):
    assert message in quantize_error(tiny_base, tmp_path / "q.safetensors", *extra)


def test_missing_base_folder(tmp_path):
    stderr = quantize_error(tmp_path / "no" / "such-pipeline", tmp_path / "q.safetensors")
    assert "no-such" not in stderr and "such-pipeline' is neither a variant" in stderr


def test_bad_prompts_file_names_the_line(tmp_path, tiny_base):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a cat"}\n{"prompt": \n')
    assert f"Error: --prompts {prompts}, line 2: not valid JSON" in quantize_error(tiny_base, tmp_path / "q.safetensors", "--prompts", str(prompts))


def test_unwritable_or_misnamed_out(tmp_path, tiny_base):
    (tmp_path / "file").write_text("")
    assert "is a file, not a folder" in quantize_error(tiny_base, tmp_path / "file" / "q.safetensors")
    assert "name it *.safetensors" in quantize_error(tiny_base, tmp_path / "q.bin")
    assert "writes a folder" in quantize_error(tiny_base, tmp_path / "q.safetensors", "--format", "diffusers")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_text("")
    assert "is a non-empty folder flux2-int8 did not write" in quantize_error(tiny_base, tmp_path / "photos", "--format", "diffusers")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["holiday.jpg"]


def test_sequential_offload_is_refused(tmp_path, tiny_base):
    import flux2_int8
    from flux2_int8.errors import Flux2Int8Error

    with pytest.raises(Flux2Int8Error, match="--offload sequential cannot be used to quantize"):
        flux2_int8.quantize(tiny_base, tmp_path / "q.safetensors", offload="sequential")


def test_a_quantized_transformer_is_refused_as_the_source(tmp_path, tiny_base, default_run):
    stderr = quantize_error(tiny_base, tmp_path / "q.safetensors", "--transformer", default_run["path"])
    assert "a bfl-int8 checkpoint; quantize needs a float (BF16) transformer" in stderr


def test_bf16_single_file_replaces_the_base_transformer(tmp_path, tiny_base, default_run):
    from quantize_helpers import quantize_json

    report = quantize_json(tmp_path / "q.safetensors", "--transformer", str(tiny_base / "transformer-bf16.safetensors"))
    assert report["statistics"]["transformer_calls"] == 6
    # Same model up to BF16 rounding of the weights, so nearly the same ranges as from the float32 folder.
    for name, value in default_run["statistics"]["input_amax"].items():
        assert report["statistics"]["input_amax"][name] == pytest.approx(value, rel=0.05)


# Runs the CLI with safetensors' writer replaced by one that writes part of the file, then hangs.
_SLOW_WRITER = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import flux2_int8.formats.write as write

def slow_save(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"\\0" * 4096)
    Path(sys.argv[1]).write_text("writing")
    time.sleep(120)

write.save_file = slow_save
from flux2_int8.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_killing_the_writer_mid_write_leaves_no_output_file(tmp_path, tiny_base):
    out, marker = tmp_path / "q.safetensors", tmp_path / "writing"
    args = ["quantize", "--base", str(tiny_base), "--out", str(out), "--samples", "1", "--steps", "1", "--resolution", "64", "--device", "cpu", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(marker), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the writer never started"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "writing"]
    assert leftovers and all(name.startswith(".q.safetensors.") and name.endswith(".partial") for name in leftovers)
