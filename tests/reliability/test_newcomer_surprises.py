"""Issue 23, class 7: what a new user meets following the README, on nano, offline.

Each test tries the command as written and asserts what a newcomer would expect: quiet
means quiet, a default run works offline, nothing is claimed that did not happen, nothing
is left behind by a failed fetch.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import child_env, cli_command, run_cli

PROMPT = "two red circles on a blue background"


@pytest.fixture(scope="module")
def nano_int8(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nano-int8") / "nano-int8.safetensors"
    outcome = run_cli("quantize", "--base", "nano", "--out", out, "--samples", "2", "--steps", "1", "--device", "cpu", "--quiet")
    assert outcome.code == 0 and out.is_file(), outcome.stderr
    return out


@pytest.fixture
def bars_back_after():
    """--quiet turns loading bars off process-wide (right for a command); give them back to the other tests.

    The libraries are imported first, so what their imports print (other packages' warnings) is not the run's.
    """
    import diffusers
    import huggingface_hub
    import transformers

    import flux2_int8.generate.pipeline  # noqa: F401
    import flux2_int8.quantization.api  # noqa: F401

    yield

    diffusers.utils.logging.enable_progress_bar()
    transformers.utils.logging.enable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


@pytest.mark.parametrize("command", [
    ["generate", "--base", "nano", "--prompt", PROMPT, "--out", "{tmp}/a.png", "--device", "cpu", "--quiet"],
    ["quantize", "--base", "nano", "--out", "{tmp}/q.safetensors", "--samples", "1", "--steps", "1", "--device", "cpu", "--quiet"],
])
def test_quiet_prints_nothing_not_even_loading_bars(tmp_path, command, bars_back_after):
    outcome = run_cli(*(part.format(tmp=tmp_path) for part in command))
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr == "" and outcome.stdout == "", outcome.stderr


def test_quantize_dynamic_says_it_calibrated_nothing(tmp_path):
    outcome = run_cli("quantize", "--base", "nano", "--out", tmp_path / "d.safetensors", "--activations", "dynamic", "--device", "cpu")
    assert outcome.code == 0, outcome.stderr
    assert "calibrated on 0" not in outcome.stdout and "no calibration run" in outcome.stdout


@pytest.mark.parametrize("calibration", ["max", "percentile:99.9"])
def test_quantize_dynamic_refuses_a_calibration_it_would_ignore(tmp_path, calibration):
    run_cli("quantize", "--base", "nano", "--out", tmp_path / "d.safetensors", "--activations", "dynamic", "--calibration", calibration).assert_one_error_line(2, "--calibration", "dynamic")
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize("keep", [["*"], ["*blocks*", "x_embedder", "context_embedder", "*"]])
def test_quantize_refuses_to_keep_every_linear(tmp_path, keep):
    flags = [part for pattern in keep for part in ("--keep", pattern)]
    outcome = run_cli("quantize", "--base", "nano", "--out", tmp_path / "k.safetensors", "--activations", "dynamic", "--device", "cpu", *flags)
    outcome.assert_one_error_line(2, "nothing would be quantized")
    assert not (tmp_path / "k.safetensors").exists()


def test_quantize_activations_auto_is_static(tmp_path):
    out = tmp_path / "auto.safetensors"
    assert run_cli("quantize", "--base", "nano", "--out", out, "--activations", "auto", "--samples", "1", "--steps", "1", "--device", "cpu", "--quiet").code == 0
    summary = json.loads(run_cli("inspect", out, "--json").stdout)
    assert summary["scale_shapes"].get("input_scale"), summary["scale_shapes"]


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No network and empty weight caches: what a fresh offline machine has."""
    return {**child_env(), "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}


def test_eval_on_nano_with_the_default_metrics_works_offline_and_says_what_it_skipped(tmp_path, nano_int8):
    empty = tmp_path / "no-weights"  # a weights folder holding nothing: offline, as on a fresh machine
    empty.mkdir()
    outcome = run_cli("eval", "--base", "nano", "--candidate", f"int8={nano_int8}", "--limit", "1", "--steps", "1", "--out", tmp_path / "e", "--device", "cpu", "--quiet", "--metrics-weights", empty)
    assert outcome.code == 0, outcome.stderr
    notes = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: skipped") and "clip" in notes[0] and "lpips" in notes[0], outcome.stderr
    summary = json.loads((tmp_path / "e" / "metrics.json").read_text())["summary"]["overall"]["int8"]
    assert "psnr" in summary and "accuracy" in summary and "clip" not in summary


def test_eval_names_a_missing_candidate_before_missing_weights(tmp_path):
    command = cli_command("eval", "--base", "nano", "--candidate", str(tmp_path / "typo.safetensors"), "--metrics", "clip,lpips", "--out", str(tmp_path / "e"))
    done = subprocess.run(command, capture_output=True, text=True, env=_offline_env(tmp_path), timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 2 and len(errors) == 1 and "typo.safetensors" in errors[0], done.stderr


@pytest.mark.parametrize("metrics", ["clip", "clip,lpips,fid"])
def test_fetch_weights_offline_leaves_nothing_and_does_not_suggest_itself(tmp_path, metrics):
    folder = tmp_path / "weights"
    done = subprocess.run(cli_command("fetch-weights", str(folder), "--metrics", metrics), capture_output=True, text=True, env=_offline_env(tmp_path), timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "fetch-weights" not in errors[0] and "online" in errors[0]
    assert not folder.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".weights")]


def test_fetch_weights_offline_keeps_an_existing_folder_as_it_was(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    done = subprocess.run(cli_command("fetch-weights", str(folder), "--metrics", "clip"), capture_output=True, text=True, env=_offline_env(tmp_path), timeout=120)
    assert done.returncode == 2 and folder.is_dir()
