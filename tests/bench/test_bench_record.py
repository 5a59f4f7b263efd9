"""scripts/record_gpu_results.py: a run's JSON lands in docs/benchmarks.md's "Measured" section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts_helpers import load_script

from flux2_int8.bench.microbench import LinearShape, LinearTiming, MicrobenchResult, device_peak
from flux2_int8.bench.pipeline_bench import BenchResult, BenchSettings, ImageTiming, RunResult
from flux2_int8.bench.record import BEGIN, END, read_reports, record_measured, targets_table
from flux2_int8.bench.report import build_document
from flux2_int8.bench.timing import Stats
from flux2_int8.errors import Flux2Int8Error

ROOT = Path(__file__).resolve().parents[2]
H200 = {"device_type": "cuda", "device_name": "NVIDIA H200", "cuda": "12.8", "torch": "2.11.0", "diffusers": "0.42.1", "transformers": "5.17.0", "triton": "3.6.0", "int8_auto": "int_mm", "flux2_int8": "0.1.0", "python": "3.12.3", "cpu_count": 16, "torch_threads": 16, "date_utc": "2026-12-01T10:00:00Z"}


def _run(fmt: str, backend: str | None, mode: str, step_s: float, peak_gb: float) -> RunResult:
    step = Stats.from_samples([step_s])
    image = ImageTiming(total=step.scaled(4), measured=False)
    first = 40.0 if mode != "off" else step_s
    return RunResult(fmt, mode, 8.0, first, step, image, 1 / (4 * step_s), None, int(peak_gb * 1e9), None, 2_000_000_000, True, int8_backend=backend, label=f"{fmt} ({backend})" if backend else fmt)


def _nine_b() -> dict:
    runs = [
        _run("bf16", None, "off", 0.150, 20.0),
        _run("bf16", None, "regional", 0.100, 20.0),
        _run("int8", "int_mm", "off", 0.120, 11.0),
        _run("int8", "int_mm", "regional", 0.055, 11.0),
    ]
    result = BenchResult(settings=BenchSettings(variant="klein-9b", random_weights=True, compile_modes=("off", "regional"), int8_backends=("int_mm",)), runs=runs, source="random klein-9b weights")
    return build_document(result, None, H200, "flux2-int8 bench --variant klein-9b --random-weights ...", "klein-9b", status="complete", time_budget_s=220)


def _micro() -> dict:
    result = MicrobenchResult("NVIDIA H200", device_peak("NVIDIA H200"), ("int_mm", "triton"))
    for k, n, int8_ms in ((4096, 4096, 0.05), (4096, 36864, 0.30)):
        result.timings.append(LinearTiming(LinearShape(k, n, ("klein-9b x",)), 4608, False, Stats.from_samples([2 * int8_ms * 1e-3]), {"int_mm": Stats.from_samples([int8_ms * 1e-3]), "triton": Stats.from_samples([1.5 * int8_ms * 1e-3])}))
    result.skipped.append({"what": "16384x4096 at M=4608", "why": "needs about 9 s"})
    return build_document(None, result, H200, "flux2-int8 bench --microbench-only ...", "klein-9b", status="interrupted", time_budget_s=40)


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "proof"
    out.mkdir()
    (out / "9b.json").write_text(json.dumps(_nine_b()))
    (out / "micro.json").write_text(json.dumps(_micro()))
    (out / "notes.json").write_text("[1, 2]")  # not a bench report: ignored
    return out


def _doc(tmp_path: Path) -> Path:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nbefore\n\n## Measured\n\n{BEGIN}\nGPU figures: owed.\n{END}\n\nafter\n")
    return doc


def test_targets_are_judged_from_the_reports(run_dir):
    rows = "\n".join(targets_table(read_reports(run_dir)))
    assert "| every klein-9B linear shape INT8 >= 1.7x BF16 (M = 4608) | int_mm eager: worst shape 2.00x (2 shapes) | yes |" in rows
    assert "int8 (int_mm): 0.220 s vs BF16 0.400 s, 1.82x | yes |" in rows  # 4 x 55 ms, 4 x 100 ms
    assert "int8 (int_mm): 11.00 GB vs BF16 20.00 GB, 0.55x | yes |" in rows


def test_script_renders_the_run_between_the_markers_only(run_dir, tmp_path, capsys):
    script = load_script("scripts/record_gpu_results.py")
    doc = _doc(tmp_path)
    assert script.main([str(run_dir), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n\n## Measured\n\n" + BEGIN) and text.endswith(END + "\n\nafter\n")
    assert "GPU figures: owed." not in text
    assert "### NVIDIA H200, 2026-12-01" in text and "- call: `bash scripts/bench_gpu.sh proof`" in text
    assert "torch 2.11.0, CUDA 12.8, triton 3.6.0, diffusers 0.42.1" in text
    assert text.index("#### micro") < text.index("#### 9b")  # proof order: cheapest first
    assert "`flux2-int8 bench --microbench-only ...` (interrupted; 2026-12-01T10:00:00Z)" in text
    assert "| klein-9b | int8 (int_mm) | 0.480* | 0.220* | 40.0 |" in text and "Published reference (RTX 5090" in text
    assert "- skipped: 16384x4096 at M=4608: needs about 9 s" in text
    assert "Still owed (not produced by this run): check, eager-compiled, micro-compiled, lora, convrot, 9b-full." in text
    assert script.main([str(run_dir), "--doc", str(doc)]) == 0 and doc.read_text() == text  # idempotent


def test_bad_inputs_are_one_line_errors(tmp_path, run_dir):
    with pytest.raises(Flux2Int8Error, match="no flux2-int8 bench JSON found"):
        read_reports(tmp_path / "empty")
    doc = tmp_path / "plain.md"
    doc.write_text("# no markers\n")
    with pytest.raises(Flux2Int8Error, match="expected one .* line followed by one"):
        record_measured(doc, run_dir)
    assert doc.read_text() == "# no markers\n"


def test_the_repository_document_has_the_markers():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_a_lora_step_report_renders_as_its_own_section(run_dir, tmp_path):
    """benchmarks/lora_step.py --json (run for real, the smallest klein-4B block) lands after micro, in proof order."""
    lora_step = load_script("benchmarks/lora_step.py")
    argv = ["--double", "0", "--single", "1", "--side", "2", "--text", "4", "--repeats", "1", "--json", str(run_dir / "lora.json")]
    assert lora_step.main(argv) == 0
    document = json.loads((run_dir / "lora.json").read_text())
    steps = document["steps"]["off"]
    assert document["status"] == "complete" and steps["unfused"]["ratio_to_int8"] == pytest.approx(steps["unfused"]["s"] / steps["int8"]["s"])
    text = record_measured(_doc(tmp_path), run_dir)
    assert list(read_reports(run_dir)) == ["micro", "9b", "lora"]
    assert "#### lora" in text and "lora rank 16 on 2 layers" in text and f"| off | {steps['int8']['s'] * 1e3:.2f} |" in text
    assert "Still owed (not produced by this run): check, eager-compiled, micro-compiled, convrot, 9b-full." in text


def _peers_path(ratio: float) -> dict:
    return {"median_s": ratio * 1e-3, "ratio": ratio, "ratio_min": ratio * 0.9, "ratio_max": ratio * 1.1, "relative_error": 2e-3, "weight_bytes": 1}


def test_an_eager_compiled_report_renders_one_table_in_proof_order(run_dir, tmp_path):
    """benchmarks/peers.py --json (the eager-compiled section): a column per path, a row per workload."""
    paths = {"bf16": _peers_path(1.0), "flux2-int8 eager (int_mm)": _peers_path(0.80), "flux2-int8 eager (triton)": _peers_path(0.60)}
    block_paths = {**paths, "flux2-int8 compiled (triton_prequant)": _peers_path(0.5)}
    document = {
        "schema": "flux2-int8-peers/1", "command": "python benchmarks/peers.py --device cuda ...", "environment": H200, "status": "complete",
        "settings": {"rounds": 10}, "skipped_peers": {"sdnq": "not installed (pip install 'flux2-int8[peers]')"}, "notes": {},
        "linear": [{"part": "linear", "k": 4096, "n": 36864, "m": 4608, "paths": paths}],
        "block": {"part": "block", "name": "klein-9b 1 double + 1 single", "image_tokens": 4096, "text_tokens": 512, "paths": block_paths},
        "models": [], "geometric_means": {"4608": {"bf16": 1.0, "flux2-int8 eager (int_mm)": 0.8, "flux2-int8 eager (triton)": 0.6}},
    }
    (run_dir / "eager-compiled.json").write_text(json.dumps(document))
    text = record_measured(_doc(tmp_path), run_dir)
    assert list(read_reports(run_dir)) == ["micro", "eager-compiled", "9b"]
    assert "#### eager-compiled" in text and "median of 10 interleaved rounds" in text
    assert "| workload | BF16 ms | flux2-int8 eager (int_mm) | flux2-int8 eager (triton) | flux2-int8 compiled (triton_prequant) |" in text
    assert "| K=4096 N=36864 M=4608 | 1.00 | 0.80 (0.72-0.88) | 0.60 (0.54-0.66) | - |" in text
    assert "| klein-9b 1 double + 1 single (4096 + 512 tokens) | 1.00 | 0.80 (0.72-0.88) | 0.60 (0.54-0.66) | 0.50 (0.45-0.55) |" in text
    assert "at M = 4608: flux2-int8 eager (int_mm) 0.80, flux2-int8 eager (triton) 0.60" in text and "- sdnq: not installed" in text
    assert "eager-compiled" not in text.split("Still owed")[1]
