"""`bash scripts/bench_gpu.sh proof-dry`: the GPU proof's sequence on the tiny model on a CPU, so it cannot rot.

It runs every section the real `proof` runs (same options, tiny model, CPU, a small clock),
and its output is what scripts/record_gpu_results.py reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flux2_int8.bench.record import BEGIN, END, record_measured

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("check", "micro", "eager-compiled", "9b", "micro-compiled", "lora", "9b-full")
CLOCK_S = 90  # PROOF_SECONDS: sections that do not fit are skipped or stopped, as on the GPU


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils timeout")
def test_proof_dry_runs_every_section_within_its_clock_and_records(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PROOF_SECONDS=str(CLOCK_S), PYTHONPATH=str(ROOT / "src"))
    started = time.monotonic()
    done = subprocess.run(["bash", "scripts/bench_gpu.sh", "proof-dry", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLOCK_S + 120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = tmp_path / "proof-dry"
    log = (out / "log.txt").read_text()
    assert "torch " in log and "nvidia-smi" in log  # the versions open the log (no env.txt: 8 files at most come back)
    # The clock holds: the last section ends by its hard stop (+ 20 s to kill a stuck process).
    assert elapsed < CLOCK_S + 40, log
    for name in SECTIONS:
        assert f"== {name}: " in log
        if (out / f"{name}.json").exists():
            document = json.loads((out / f"{name}.json").read_text())
            if name == "lora":  # benchmarks/lora_step.py: one INT8 step, + LoRA unfused, + LoRA fused
                assert document["status"] == "complete" and set(document["steps"]["off"]) == {"int8", "unfused", "fused"} and document["steps"]["off"]["int8"]["ratio_to_int8"] == 1.0
            elif name == "eager-compiled":  # benchmarks/peers.py: eager int_mm vs triton per shape, and a block
                assert document["schema"].startswith("flux2-int8-peers/") and document["linear"]
                assert {"flux2-int8 eager (int_mm)", "flux2-int8 eager (triton)", "bf16"} <= set(document["linear"][0]["paths"])
            else:
                assert document["status"] in ("complete", "interrupted") and document["variant"] == "tiny"
        else:
            assert f"== {name}: skipped" in log or f"== {name}: wrote no report" in log
    check = json.loads((out / "check.json").read_text())["check"]  # the first section always runs
    assert check["passed"] and check["tokens"] == [1, 17]
    assert {path.name for path in out.iterdir()} <= {"log.txt", *(f"{name}.json" for name in SECTIONS)}  # at most 8 files come back
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"## Measured\n\n{BEGIN}\nowed\n{END}\n")
    text = record_measured(doc, out, "bash scripts/bench_gpu.sh proof-dry")
    assert "#### check" in text and "**PASS**" in text and "owed\n" not in text
    if (out / "lora.json").exists():
        assert "#### lora" in text and "| off | " in text
    if "== report convrot.json: " in log:  # the convrot section's JSON travels inside log.txt (8 files at most come back)
        assert "#### convrot" in text and "| 256 x 256 | " in text
    else:
        assert "== convrot: skipped" in log or "== convrot: wrote no report" in log
    if (out / "eager-compiled.json").exists():
        assert "#### eager-compiled" in text and "| K=" in text and "flux2-int8 eager (triton)" in text
