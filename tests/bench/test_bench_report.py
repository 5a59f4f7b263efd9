"""Report documents: summary arithmetic, Markdown rendering and atomic files."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from flux2_int8.bench.pipeline_bench import BenchResult, BenchSettings, ImageTiming, RunResult
from flux2_int8.bench.report import build_document, format_markdown, write_report
from flux2_int8.bench.timing import Stats

ENV = {"device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "cuda": "13.0", "torch": "2.11.0", "diffusers": "0.42.1", "transformers": "5.17.0", "triton": "3.6.0", "int8_auto": "int_mm", "flux2_int8": "0.1.0", "python": "3.12.3", "cpu_count": 16, "torch_threads": 16, "date_utc": "2026-01-01T00:00:00Z"}


def _run(fmt: str, compiled: bool | str, image_s: float, measured: bool = True) -> RunResult:
    """A run; compiled True is a full compile, or name the mode."""
    mode = compiled if isinstance(compiled, str) else ("full" if compiled else "off")
    step = Stats.from_samples([image_s / 4])
    phases = {"text_encoding": Stats.from_samples([0.1]), "denoising": Stats.from_samples([image_s - 0.3]), "vae_decode": Stats.from_samples([0.2])} if measured else {}
    image = ImageTiming(total=Stats.from_samples([image_s]), measured=measured, **phases)
    return RunResult(fmt, mode, 5.0, 30.0 if mode != "off" else 1.0, step, image, 1 / image_s, 9_400_000_000, 12_000_000_000, 20_150_000_000 if measured else None, 3_000_000_000, True)


def _result(measured: bool = True) -> BenchResult:
    settings = BenchSettings(variant="klein-9b", random_weights=True, full_pipeline=measured)
    runs = [_run("bf16", False, 4.0, measured), _run("bf16", True, 2.0, measured), _run("int8", False, 3.0, measured), _run("int8", True, 1.0, measured)]
    return BenchResult(settings=settings, runs=runs, components_load_s=12.0 if measured else None, components_bytes=16_400_000_000 if measured else None, source="random klein-9b weights")


def test_summary_rows_follow_the_runs():
    document = build_document(_result(), None, ENV, "flux2-int8 bench ...", "klein-9b")
    bf16, int8 = document["summary"]
    assert (bf16["eager_s_per_image"], bf16["compiled_s_per_image"], bf16["images_per_s"]) == (4.0, 2.0, 0.5)
    assert (int8["eager_s_per_image"], int8["compiled_s_per_image"], int8["images_per_s"]) == (3.0, 1.0, 1.0)
    assert int8["speedup_vs_bf16"] == pytest.approx(2.0) and bf16["speedup_vs_bf16"] == pytest.approx(1.0)
    assert int8["peak_device_gb"] == pytest.approx(20.15)
    assert document["published_reference_rtx_5090"]["compiled_s"] == 1.09


def test_markdown_has_the_published_table_shape_and_every_run():
    text = format_markdown(build_document(_result(), None, ENV, "flux2-int8 bench --variant klein-9b", "klein-9b"))
    assert "| Model | Format | Eager (s/img) | Full compile (s/img) | Full compile: first call (s) | img/s | Peak GPU memory (GB) | vs BF16 |" in text
    assert "| klein-9b | int8 | 3.000 | 1.000 | 30.0 | 1.000 | 20.15 | 2.00x |" in text
    assert text.count("| int8 | full compile |") == 1 and text.count("| bf16 | eager |") == 1
    assert "NVIDIA H100 80GB HBM3" in text and "Published reference" in text and "estimated" not in text
    assert "built in 12.00 s, 16.40 GB resident on the device" in text


def test_estimated_image_latency_is_marked():
    text = format_markdown(build_document(_result(measured=False), None, ENV, "cmd", "klein-9b"))
    assert "| klein-9b | int8 | 3.000* | 1.000* | 30.0 |" in text
    assert "estimated: steps x transformer step" in text


def test_write_report_writes_json_and_markdown(tmp_path):
    document = build_document(_result(), None, ENV, "cmd", "klein-9b")
    json_path, md_path = write_report(tmp_path / "out", document)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(document))
    assert md_path.read_text() == format_markdown(document)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bench-klein-9b.json", "bench-klein-9b.md"]


def test_rows_follow_labels_and_compare_with_unfused_bf16():
    """Summary rows group runs by plan label; the BF16 baseline is the unfused one wherever it sits."""

    def plan(run: RunResult, backend: str | None, fused: bool, label: str) -> RunResult:
        return replace(run, int8_backend=backend, fused_qkv=fused, label=label)

    runs = [
        plan(_run("bf16", True, 1.6), None, True, "bf16 (fused q/k/v)"),
        plan(_run("bf16", True, 2.0), None, False, "bf16"),
        plan(_run("int8", False, 3.0), "int_mm", False, "int8 (int_mm)"),
        plan(_run("int8", True, 1.0), "int_mm", False, "int8 (int_mm)"),
        plan(_run("int8", True, 0.8), "triton_prequant", True, "int8 (triton_prequant, fused q/k/v)"),
    ]
    result = BenchResult(settings=BenchSettings(variant="klein-9b", random_weights=True), runs=runs, source="random")
    document = build_document(result, None, ENV, "cmd", "klein-9b")
    rows = {row["label"]: row for row in document["summary"]}
    assert list(rows) == ["bf16 (fused q/k/v)", "bf16", "int8 (int_mm)", "int8 (triton_prequant, fused q/k/v)"]
    assert rows["bf16"]["speedup_vs_bf16"] == pytest.approx(1.0) and rows["bf16 (fused q/k/v)"]["speedup_vs_bf16"] == pytest.approx(2.0 / 1.6)
    assert (rows["int8 (int_mm)"]["eager_s_per_image"], rows["int8 (int_mm)"]["compiled_s_per_image"]) == (3.0, 1.0)
    assert rows["int8 (triton_prequant, fused q/k/v)"]["fused_qkv"] and rows["int8 (int_mm)"]["int8_backend"] == "int_mm"
    text = format_markdown(document)
    assert "| klein-9b | int8 (triton_prequant, fused q/k/v) | - | 0.800 | 30.0 | 1.250 | 20.15 | 2.50x |" in text
    assert "| int8 (int_mm) | eager |" in text and "Int8Linear backend 'auto' here: int_mm" in text


def test_a_run_without_a_label_is_named_from_its_plan():
    assert _run("int8", False, 1.0).label == "int8"
    assert replace(_run("int8", False, 1.0), int8_backend="triton", fused_qkv=True, label="").label == "int8 (triton, fused q/k/v)"
    assert replace(_run("bf16", False, 1.0), fused_qkv=True, label="").label == "bf16 (fused q/k/v)"
