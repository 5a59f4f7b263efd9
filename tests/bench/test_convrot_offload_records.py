"""The convrot proof section (benchmarks/convrot_paths.py, via log.txt) and the offload call's offload.json in docs/benchmarks.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts_helpers import load_script

from flux2_int8.bench.record import BEGIN, END, OFFLOAD_BEGIN, OFFLOAD_END, read_reports, record_measured
from flux2_int8.errors import Flux2Int8Error

ROOT = Path(__file__).resolve().parents[2]
H100 = {"device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "cuda": "12.8", "torch": "2.11.0", "diffusers": "0.42.1", "transformers": "5.17.0", "triton": "3.6.0", "int8_auto": "int_mm", "flux2_int8": "0.1.0", "python": "3.12.3", "cpu_count": 16, "torch_threads": 16, "date_utc": "2026-12-02T09:00:00Z"}


def _path(ms: float, ratio: float | None) -> dict:
    entry = {"check_relative_error": 1e-3, "median_s": ms * 1e-3}
    return entry if ratio is None else {**entry, "ratio": ratio, "ratio_min": ratio - 0.05, "ratio_max": ratio + 0.05}


def _convrot() -> dict:
    paths = {
        "int_mm eager, plain": _path(0.200, 1.0), "int_mm eager, convrot": _path(0.300, 1.5),
        "triton in-tile, plain": _path(0.180, 0.9), "triton in-tile, convrot": _path(0.240, 1.2),
        "int_mm compiled, plain": _path(0.150, 0.75),
    }
    rows = [{"k": 4096, "n": 4096, "m": 4608, "group": 256, "paths": paths, "errors": {"int_mm compiled, convrot": "RuntimeError: out of memory"}}]
    return {
        "schema": "flux2-int8-convrot/1", "command": "python benchmarks/convrot_paths.py --device cuda --m 4608", "status": "interrupted",
        "settings": {"m": 4608, "group": 256, "rounds": 10, "dtype": "bfloat16"}, "rows": rows,
        "skipped": [{"what": "K=4096 N=24576", "why": "3 s left, the previous shape took 20 s"}],
        "rotation_cost": {"int_mm eager": 1.5, "triton in-tile": 1.3333}, "environment": H100,
    }


def _offload() -> dict:
    results = [
        {"mode": "none", "seconds_per_image": 1.234, "peak_allocated_bytes": 30_000_000_000, "planned_peak_bytes": 25_000_000_000},
        {"mode": "group", "seconds_per_image": 2.5, "peak_allocated_bytes": 6_000_000_000, "planned_peak_bytes": None},
        {"mode": "model", "error": "CUDA out of memory", "planned_peak_bytes": 20_000_000_000},
    ]
    return {"schema": "flux2-int8-offload/1", "variant": "klein-9b", "resolution": 1024, "steps": 4, "results": results, "skipped": [{"mode": "sequential", "why": "40 s left, the previous mode took 30 s"}], "environment": H100}


def _doc(tmp_path: Path) -> Path:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# B\n\n{BEGIN}\nproof owed\n{END}\n\nmiddle\n\n{OFFLOAD_BEGIN}\nplacements owed\n{OFFLOAD_END}\n\nend\n")
    return doc


def test_the_convrot_report_is_read_from_its_log_line_and_rendered_in_proof_order(tmp_path):
    proof = tmp_path / "proof"
    proof.mkdir()
    (proof / "log.txt").write_text("versions\n== convrot: exit 0\n== report convrot.json: " + json.dumps(_convrot()) + "\n== 9b-full: skipped\n")
    lora = {"schema": "flux2-int8-lora-step/1", "command": "python benchmarks/lora_step.py", "status": "complete", "environment": H100,
            "settings": {"variant": "klein-9b", "double": 1, "single": 2, "side": 64, "text": 512, "rank": 16, "layers": 14, "dtype": "bfloat16"},
            "steps": {"off": {"int8": {"s": 0.01, "ratio_to_int8": 1.0}, "unfused": {"s": 0.012, "ratio_to_int8": 1.2}, "fused": {"s": 0.01, "ratio_to_int8": 1.0}}}}
    (proof / "lora.json").write_text(json.dumps(lora))
    assert list(read_reports(proof)) == ["lora", "convrot"]
    (proof / "convrot.json").write_text(json.dumps(_convrot()))  # the same report as a file too: read once
    assert list(read_reports(proof)) == ["lora", "convrot"]
    text = record_measured(_doc(tmp_path), proof)
    measured = text.split(BEGIN)[1].split(END)[0]
    assert measured.index("#### lora") < measured.index("#### convrot")
    assert "`python benchmarks/convrot_paths.py --device cuda --m 4608` (interrupted; 2026-12-02T09:00:00Z)" in measured
    assert "ConvRot G = 256 vs plain INT8, dynamic activations, M = 4608, bfloat16 x" in measured
    assert "| 4096 x 4096 | 0.200 (1.00, 0.95-1.05) | 0.300 (1.50, 1.45-1.55) | 0.180 (0.90, 0.85-0.95) | 0.240 (1.20, 1.15-1.25) | - | - | 0.150 (0.75, 0.70-0.80) | - |" in measured
    assert "geometric mean over the shapes): int_mm eager 1.50x, triton in-tile 1.33x" in measured
    assert "- K=4096 N=4096, int_mm compiled, convrot: RuntimeError: out of memory" in measured
    assert "- skipped: K=4096 N=24576: 3 s left" in measured
    assert "convrot" not in measured.split("Still owed")[1]
    assert "placements owed" in text  # a proof run leaves the placement section alone


def test_offload_json_renders_between_its_own_markers_and_keeps_the_proof_section(tmp_path):
    offload = tmp_path / "offload"
    offload.mkdir()
    (offload / "offload.json").write_text(json.dumps(_offload()))
    (offload / "log.txt").write_text("== offload: done in 200 s\n")
    (offload / "env.txt").write_text("nvidia-smi ...\n")
    script = load_script("scripts/record_gpu_results.py")
    doc = _doc(tmp_path)
    assert script.main([str(offload), "--doc", str(doc)]) == 0
    text = doc.read_text()
    placements = text.split(OFFLOAD_BEGIN)[1].split(OFFLOAD_END)[0]
    assert "proof owed" in text and "placements owed" not in text and text.endswith(f"{OFFLOAD_END}\n\nend\n")
    assert "### NVIDIA H100 80GB HBM3, 2026-12-02" in placements and "- call: `bash scripts/bench_gpu.sh offload`" in placements
    assert "klein-9b, random weights (INT8 transformer), 1024x1024, 4 steps" in placements
    assert "| none | 1.23 | 30.00 | 25.00 | 1.20 |" in placements  # decimal GB, as every report
    assert "| group | 2.50 | 6.00 | - | - |" in placements
    assert "| model | failed: CUDA out of memory | - | - | - |" in placements
    assert "- skipped: sequential: 40 s left" in placements
    assert script.main([str(offload), "--doc", str(doc)]) == 0 and doc.read_text() == text  # idempotent


def test_an_unreadable_report_line_or_missing_markers_are_one_line_errors(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.txt").write_text("== report convrot.json: {not json\n")
    with pytest.raises(Flux2Int8Error, match=r"log.txt, line 1: the convrot report is not readable JSON"):
        read_reports(run)
    (run / "log.txt").write_text("")
    (run / "offload.json").write_text(json.dumps(_offload()))
    doc = tmp_path / "old.md"
    doc.write_text(f"{BEGIN}\nx\n{END}\n")  # no offload markers
    with pytest.raises(Flux2Int8Error, match="offload:begin"):
        record_measured(doc, run)
    assert doc.read_text() == f"{BEGIN}\nx\n{END}\n"


def test_the_repository_document_has_both_marker_pairs():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(OFFLOAD_BEGIN) == 1 and text.count(OFFLOAD_END) == 1 and text.index(END) < text.index(OFFLOAD_BEGIN)


def test_the_convrot_benchmark_writes_what_the_recorder_reads(tmp_path):
    """benchmarks/convrot_paths.py run for real on a CPU (one small shape, no compile): its JSON renders."""
    benchmark = load_script("benchmarks/convrot_paths.py")
    out = tmp_path / "convrot.json"
    assert benchmark.main(["--device", "cpu", "--m", "32", "--group", "16", "--shapes", "64x48,128x32", "--rounds", "1", "--calls", "1", "--no-compile", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["status"] == "complete" and [(row["k"], row["n"]) for row in document["rows"]] == [(64, 48), (128, 32)]
    for row in document["rows"]:
        assert row["paths"]["int_mm eager, plain"]["ratio"] == 1.0
        assert row["paths"]["int_mm eager, convrot"]["check_relative_error"] == 0.0  # the reference itself
        if "triton in-tile, convrot" in row["paths"]:  # triton installed: the op's CPU path rotates then emulates
            assert row["paths"]["triton in-tile, convrot"]["check_relative_error"] < 1e-2
        else:
            assert "triton in-tile, convrot" in row["errors"]
    assert set(document["rotation_cost"]) <= {"int_mm eager", "triton in-tile", "triton prequant"} and "int_mm eager" in document["rotation_cost"]
    if "triton prequant, convrot" in document["rows"][0]["paths"]:
        assert document["rows"][0]["paths"]["triton prequant, convrot"]["check_relative_error"] < 1e-2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.txt").write_text("== report convrot.json: " + json.dumps(document) + "\n")
    doc = _doc(tmp_path)
    assert "| 64 x 48 | " in record_measured(doc, tmp_path / "run", "bash scripts/bench_gpu.sh proof-dry")
