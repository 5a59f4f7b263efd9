"""A usage error of every command is answered before torch (or diffusers) is imported, in about a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# (command line, words the one Error: line must hold); {tmp} is a scratch folder.
CASES = [
    (["generate", "--base", "nano", "--prompt", "x", "--width", "100"], "width"),
    (["generate", "--base", "nano", "--prompt", "x", "--image", "{tmp}/missing.png"], "missing.png"),
    (["generate", "--base", "nano", "--prompts", "{tmp}/missing.txt"], "missing.txt"),
    (["quantize", "--base", "nano", "--out", "{tmp}/q.safetensors", "--resolution", "100"], "--resolution"),
    (["quantize", "--base", "nano", "--out", "{tmp}/q.safetensors", "--prompts", "{tmp}/missing.jsonl"], "missing.jsonl"),
    (["quantize", "--base", "nano", "--out", "{tmp}/q.safetensors", "--activations", "dynamic", "--calibration", "max"], "nothing is calibrated"),
    (["quantize", "--base", "nano", "--out", "{tmp}/q.txt"], ".safetensors"),
    (["eval", "--base", "nano", "--candidate", "{tmp}/missing.safetensors", "--out", "{tmp}/e"], "missing.safetensors"),
    (["eval", "--base", "nano", "--candidate", "{tmp}/missing.safetensors", "--out", "{tmp}/e", "--width", "100"], "width"),
    (["eval", "--base", "nano", "--candidate", "{tmp}/missing.safetensors", "--out", "{tmp}/e", "--metrics", "clip,bogus"], "bogus"),
    (["bench", "--base", "nano", "--resolution", "100", "--out", "{tmp}/b"], "--resolution"),
    (["bench", "--base", "tiny", "--width", "64", "--height", "128", "--out", "{tmp}/b"], "square"),
    (["bench", "--base", "nano", "--check-tokens", "1", "--out", "{tmp}/b"], "--check"),
    (["bench", "--base", "nano", "--microbench-only", "--rotation", "convrot:12", "--out", "{tmp}/b"], "convrot:12"),
    (["quantize", "--base", "nano", "--out", "{tmp}/q.safetensors", "--calibration", "percentile:101"], "percentile"),
    (["demo", "--width", "100", "--out", "{tmp}/d"], "width"),
    (["demo", "--out", "{tmp}/full"], "full"),
    (["make-tiny", "{tmp}/full"], "full"),
    (["fetch-weights", "{tmp}/w", "--metrics", "bogus"], "bogus"),
    (["inspect", "{tmp}/missing.safetensors"], "missing.safetensors"),
    (["plan", "--base", "nano", "--gpu-memory", "bogus"], "bogus"),
]

PROGRAM = """
import contextlib, io, json, sys, time
from flux2_int8.cli import main
results = []
for argv, words in json.loads(sys.argv[1]):
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    heavy = sorted(name for name in ("torch", "diffusers", "transformers") if name in sys.modules)
    results.append({"argv": argv, "code": code, "err": err.getvalue(), "heavy": heavy, "seconds": time.perf_counter() - start, "words": words})
print(json.dumps(results))
"""


def test_usage_errors_are_answered_before_torch_is_imported(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("a user's file\n")
    cases = [([part.format(tmp=tmp_path) for part in argv], words) for argv, words in CASES]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROGRAM, json.dumps(cases)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    failures = []
    for result in json.loads(done.stdout.splitlines()[-1]):
        lines = [line for line in result["err"].splitlines() if line.strip()]
        one_line = result["code"] == 2 and len(lines) == 1 and lines[0].startswith("Error:") and result["words"] in lines[0]
        if not one_line or result["heavy"] or result["seconds"] >= 5:
            failures.append(f"{' '.join(result['argv'])}: exit {result['code']}, imported {result['heavy']}, {result['seconds']:.1f} s: {result['err'].strip()[:300]}")
    assert not failures, "\n".join(failures)


def test_make_tiny_names_the_tiny_marker_as_the_tiny_pipeline_does():
    from flux2_int8.commands.make_tiny import TINY_MARKER_FILE
    from flux2_int8.tiny.pipeline import MARKER_FILE

    assert TINY_MARKER_FILE == MARKER_FILE
