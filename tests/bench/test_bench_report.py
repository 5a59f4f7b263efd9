"""Report documents: summary arithmetic, Markdown rendering and atomic files."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from flux2_int8.bench.pipeline_bench import BenchResult, BenchSettings, ImageTiming, RunResult
from flux2_int8.bench.page import NOISY_NOTE
from flux2_int8.bench.report import build_document, format_markdown, write_report
from flux2_int8.bench.timing import Stats

REPOSITORY = Path(__file__).resolve().parents[2]
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


def test_write_report_writes_json_markdown_and_the_chart_page(tmp_path):
    document = build_document(_result(), None, ENV, "cmd", "klein-9b")
    json_path, md_path, html_path = write_report(tmp_path / "out", document)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(document))
    assert md_path.read_text() == format_markdown(document)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bench-klein-9b.html", "bench-klein-9b.json", "bench-klein-9b.md"]
    page = html_path.read_text()
    assert re.findall(r"<svg class='chart' data-kind='([^']*)'", page) == ["latency", "first_call", "memory"]
    latency = _bars(page, "latency")
    assert latency == {("Eager", "bf16"): 4.0, ("Full compile", "bf16"): 2.0, ("Eager", "int8"): 3.0, ("Full compile", "int8"): 1.0}
    assert _bars(page, "memory") == {("peak memory", "bf16"): pytest.approx(20.15), ("peak memory", "int8"): pytest.approx(20.15)}


def _bars(page: str, kind: str) -> dict[tuple[str, str], float]:
    svg = re.search(rf"<svg class='chart' data-kind='{kind}'(.*?)</svg>", page, re.S).group(1)
    return {(series, group): float(value) for series, group, value in re.findall(r"<rect class='bar' data-series='([^']*)' data-group='([^']*)' data-value='([^']*)'", svg)}


def _timed(fmt: str, mode: str, step: list[float], image: list[float]) -> RunResult:
    """A run with these step and whole-image timings (seconds)."""
    return RunResult(fmt, mode, 5.0, 1.0, Stats.from_samples(step), ImageTiming(total=Stats.from_samples(image), measured=True), 1 / image[len(image) // 2], None, None, None, 3_000_000_000, True)


def _noisy_document() -> dict:
    runs = [
        _timed("bf16", "off", [1.0, 1.2, 1.5], [4.0, 4.0, 4.0]),  # spread 0.5 < 0.6 = median/2
        _timed("bf16", "full", [1.0, 1.0, 1.5], [2.0, 2.0, 2.0]),  # spread 0.5 = median/2 exactly: not wider
        _timed("int8", "off", [1.0, 1.0, 1.0], [3.0, 3.0, 4.6]),  # the image's spread 1.6 > 1.5
        _timed("int8", "full", [0.2, 0.25, 0.4], [1.0, 1.0, 1.0]),  # the step's spread 0.2 > 0.125
    ]
    result = BenchResult(settings=BenchSettings(variant="klein-9b", random_weights=True, full_pipeline=True), runs=runs, source="random")
    return build_document(result, None, {**ENV, "device_type": "cpu", "cuda": None}, "cmd", "klein-9b")


def test_noisy_flags_exactly_the_rows_whose_spread_is_wider_than_half_the_median():
    assert Stats.from_samples([1.0, 1.5, 2.0]).noisy and not Stats.from_samples([1.0, 1.5, 1.75]).noisy
    document = _noisy_document()
    assert [run["noisy"] for run in document["runs"]] == [False, False, True, True]
    assert [row["noisy"] for row in document["summary"]] == [{"off": False, "full": False}, {"off": True, "full": True}]
    text = format_markdown(document)
    assert "| klein-9b | bf16 | 4.000 | 2.000 |" in text and "| klein-9b | int8 | 3.000 † | 1.000 † |" in text
    assert "| bf16 | eager |" in text and "| bf16 | full compile |" in text
    assert "| int8 † | eager |" in text and "| int8 † | full compile |" in text
    assert text.count(NOISY_NOTE) == 1
    assert NOISY_NOTE not in format_markdown(build_document(_result(), None, ENV, "cmd", "klein-9b"))  # one sample each: no spread


def test_the_chart_page_hatches_and_marks_the_noisy_rows(tmp_path):
    document = _noisy_document()
    page = write_report(tmp_path, document)[2].read_text()
    flags = dict(((series, group), flagged) for series, group, flagged in re.findall(r"data-series='([^']*)' data-group='([^']*)' data-value='[^']*' data-flagged='([^']*)'", page.split("data-kind='latency'")[1].split("</svg>")[0]))
    assert flags == {("Eager", "bf16"): "false", ("Full compile", "bf16"): "false", ("Eager", "int8"): "true", ("Full compile", "int8"): "true"}
    assert page.count("<td class=noisy>") == 4  # two summary cells, two detail rows
    assert html.escape(NOISY_NOTE) in page


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")), reason="no Chromium installed")
def test_the_chart_page_renders_its_charts_in_headless_chromium(tmp_path):
    page = write_report(tmp_path, _noisy_document())[2]
    shot = tmp_path / "shot.png"
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "scripts" / "screenshot_demo.py"), str(page), "--out", str(shot), "--window-size", "1280,900"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    colours = {colour: count for count, colour in Image.open(shot).convert("RGB").getcolors(1 << 20)}
    # Eager bars are solid charts.PALETTE[0]; the hatched (noisy) bars and compiled bars carry PALETTE[1].
    assert colours.get((0, 114, 178), 0) > 2000 and colours.get((230, 159, 0), 0) > 1000


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
