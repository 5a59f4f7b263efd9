"""`flux2-int8 bench` on CPU: the tiny smoke run CI keeps, and the option errors."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from flux2_int8.cli import main

TOP_LEVEL = {"schema", "variant", "command", "status", "time_budget_s", "skipped", "check", "environment", "settings", "source", "components_load_s", "components_bytes", "runs", "summary", "microbench", "published_reference_rtx_5090"}
RUN_FIELDS = {"format", "compile", "compiled", "load_s", "first_call_s", "step", "image", "images_per_s", "weights_bytes", "peak_step_bytes", "peak_image_bytes", "host_rss_peak_bytes", "host_peak_is_per_run", "int8_backend", "fused_qkv", "activations", "fused_attentions", "label", "noisy"}
STATS_FIELDS = {"median_s", "min_s", "max_s", "mean_s", "repeats"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The CI smoke command, run once: tiny, BF16 and INT8, eager, 2 repeats."""
    out = tmp_path_factory.mktemp("bench")
    progress = io.StringIO()
    with contextlib.redirect_stderr(progress):
        code = main(["bench", "--base", "tiny", "--formats", "bf16,int8", "--compile", "off", "--repeats", "2", "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "bench-tiny.json").read_text()), progress.getvalue()


def _check_stats(stats, repeats):
    assert set(stats) == STATS_FIELDS and stats["repeats"] == repeats
    assert 0 < stats["min_s"] <= stats["median_s"] <= stats["max_s"]
    assert stats["min_s"] <= stats["mean_s"] <= stats["max_s"]


def test_smoke_json_has_every_field(smoke):
    _, document, _ = smoke
    assert set(document) == TOP_LEVEL
    assert document["environment"]["device_type"] == "cpu" and document["environment"]["torch"]
    assert document["settings"]["num_steps"] == 4 and document["settings"]["resolution"] == 128
    assert "--base tiny" in document["command"] and "--compile off" in document["command"]
    assert document["components_load_s"] > 0 and document["components_bytes"] is None  # no device memory on CPU
    assert [(run["format"], run["compiled"]) for run in document["runs"]] == [("bf16", False), ("int8", False)]
    # Defaults: backend auto (not named in the label), nothing fused.
    assert [(run["label"], run["int8_backend"], run["fused_qkv"], run["fused_attentions"]) for run in document["runs"]] == [("bf16", None, False, 0), ("int8", "auto", False, 0)]
    for run in document["runs"]:
        assert set(run) == RUN_FIELDS
        assert run["load_s"] > 0 and run["first_call_s"] > 0 and run["host_rss_peak_bytes"] > 0
        assert run["weights_bytes"] is None and run["peak_step_bytes"] is None  # no device memory on CPU
        _check_stats(run["step"], 2)
        for phase in ("total", "text_encoding", "denoising", "vae_decode"):
            _check_stats(run["image"][phase], 2)


def test_smoke_numbers_are_consistent(smoke):
    _, document, _ = smoke
    for run in document["runs"]:
        image = run["image"]
        assert image["measured"] is True
        phases = [image[p] for p in ("text_encoding", "denoising", "vae_decode")]
        # Each total sample is the sum of its three phases.
        assert sum(p["min_s"] for p in phases) <= image["total"]["min_s"] * (1 + 1e-9)
        assert image["total"]["max_s"] <= sum(p["max_s"] for p in phases) * (1 + 1e-9)
        assert run["images_per_s"] == pytest.approx(1 / image["total"]["median_s"])
    rows = {row["format"]: row for row in document["summary"]}
    bf16, int8 = rows["bf16"], rows["int8"]
    assert bf16["eager_s_per_image"] == document["runs"][0]["image"]["total"]["median_s"] and bf16["compiled_s_per_image"] is None
    assert int8["speedup_vs_bf16"] == pytest.approx(int8["images_per_s"] / bf16["images_per_s"])
    assert bf16["host_rss_peak_gb"] > 0 and bf16["peak_device_gb"] is None


def test_smoke_markdown_and_output(smoke, capsys):
    out, document, _ = smoke
    markdown = (out / "bench-tiny.md").read_text()
    assert "| Model | Format | Eager (s/img) | img/s | Peak host RSS (GB) | vs BF16 |" in markdown  # only the modes that ran
    assert "| tiny | bf16 |" in markdown and "| tiny | int8 |" in markdown
    # A row whose timings spread wider than half their median carries the noisy mark †.
    assert re.search(r"\| int8( †)? \| eager \|", markdown) and document["command"] in markdown


def test_smoke_shows_progress_per_plan_and_writes_the_chart_page(smoke):
    out, document, progress = smoke
    lines = progress.splitlines()
    for index, label in enumerate(["bf16", "int8"], 1):
        assert f"[{index}/2] tiny {label}: loading" in lines
        done = next(line for line in lines if line.startswith(f"[{index}/2] tiny {label}: eager: "))
        run = document["runs"][index - 1]
        assert f"{run['image']['total']['median_s']:.3f} s/img" in done and ("NOISY" in done) == run["noisy"]
    page = (out / "bench-tiny.html").read_text()
    assert re.findall(r"<svg class='chart' data-kind='([^']*)'", page) == ["latency", "memory"]  # eager only: no first-call chart
    assert page.count("<table>") == 2 and document["command"].split()[0] in page


def test_microbench_only_writes_the_linear_table(tmp_path, capsys):
    command = ["bench", "--base", "tiny", "--microbench-only", "--int8-backends", "emulated,reference", "--fuse-qkv", "--compile", "off", "--repeats", "1", "--rotation", "off,convrot:16"]
    assert main([*command, "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "bench-tiny.json").read_text())
    assert document["runs"] == [] and document["settings"] is None
    assert document["microbench"]["int8_backends"] == ["emulated", "reference"]
    assert document["microbench"]["rotations"] == ["off", "convrot:16"] and "--rotation off,convrot:16" in document["command"]
    timings = document["microbench"]["timings"]
    assert [t["rotation"] for t in timings] == ["off", "convrot:16"] * (len(timings) // 2)  # every tiny K is a multiple of 16
    # (32, 96) exists only in the fused model: the double blocks' to_qkv (3 x 32 inner features).
    assert {(t["in_features"], t["out_features"]) for t in timings} >= {(32, 32), (128, 32), (32, 96)}
    for t in timings:
        assert t["tokens"] == 64 + 512 and t["bf16_tflops"] > 0 and list(t["int8"]) == ["emulated", "reference"]
        assert all(row["tops"] > 0 and row["speedup_vs_bf16"] > 0 for row in t["int8"].values())
    out = capsys.readouterr().out
    assert "Int8Linear (emulated, reference) vs BF16 nn.Linear" in out
    assert "| emulated (ms) | emulated TOPS | emulated/BF16 | reference (ms) | reference TOPS | reference/BF16 |" in out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--base", "klein-9b"], "--random-weights"),
        (["--base", "klein-9b", "--random-weights", "--transformer", "x.safetensors"], "exclude each other"),
        (["--base", "tiny", "--formats", "bf16,int4"], "--formats 'bf16,int4'"),
        (["--base", "tiny", "--compile", "maybe"], "--compile 'maybe'"),
        (["--base", "tiny", "--time-budget", "0"], "--time-budget: '0' is not a finite number above 0"),
        (["--base", "tiny", "--check", "--check-tokens", "1,x"], "--check-tokens '1,x'"),
        (["--base", "tiny", "--check-tokens", "1"], "--check-tokens goes with --check"),
        (["--base", "tiny", "--check", "--microbench-only"], "choose one"),
        (["--base", "tiny", "--resolution", "100"], "multiple of 16"),
        (["--base", "tiny", "--repeats", "0"], "--repeats: '0' is not an integer from 1 to 1000"),
        (["--base", "tiny", "--transformer", "x.safetensors"], "klein variants"),
        (["--base", "klein-4b", "--transformer", "missing.safetensors"], "missing.safetensors: no such file"),
        (["--base", "tiny", "--int8-backends", "int_mm,cutlass"], "--int8-backends 'int_mm,cutlass'"),
        (["--base", "tiny", "--int8-backends", ""], "--int8-backends ''"),
        (["--base", "tiny", "--formats", "bf16", "--int8-backends", "int_mm"], "no int8 weights to run them on"),
        (["--base", "tiny", "--fuse-qkv", "maybe"], "--fuse-qkv 'maybe'"),
        (["--base", "tiny", "--microbench-only", "--rotation", "off,convrot:3"], "--rotation 'convrot:3'"),
        (["--base", "tiny", "--rotation", "convrot"], "add --microbench or --microbench-only"),
        (["--base", "tiny", "--check", "--microbench", "--rotation", "convrot"], "not --check"),
        (["--base", "tiny", "--formats", "int8,fp8", "--fuse-qkv"], "--fuse-qkv on: q/k/v fusion is for bf16 and int8"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, options, message):
    out = tmp_path / "out"
    assert main(["bench", *options, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: ") and message in error
    assert not out.exists()


def test_compile_modes_side_by_side_give_a_row_per_format_and_mode(tmp_path, capsys):
    """The issue's command: eager, whole-model and regional compilation in one run, each with its first call."""
    command = ["bench", "--base", "tiny", "--formats", "bf16,int8", "--compile", "off,full,regional", "--repeats", "2", "--resolution", "64", "--out", str(tmp_path)]
    assert main(command) == 0
    document = json.loads((tmp_path / "bench-tiny.json").read_text())
    assert [(run["format"], run["compile"], run["compiled"]) for run in document["runs"]] == [
        (fmt, mode, mode != "off") for fmt in ("bf16", "int8") for mode in ("off", "full", "regional")
    ]
    for run in document["runs"]:
        assert run["first_call_s"] > 0
        _check_stats(run["step"], 2)
    for row in document["summary"]:
        assert set(row["s_per_image"]) == set(row["first_call_s"]) == {"off", "full", "regional"}
        assert row["compiled_s_per_image"] == min(row["s_per_image"]["full"], row["s_per_image"]["regional"])
        # Compiling costs more than an eager call.
        assert row["first_call_s"]["full"] > row["first_call_s"]["off"] and row["first_call_s"]["regional"] > row["first_call_s"]["off"]
    markdown = (tmp_path / "bench-tiny.md").read_text()
    assert "| Eager (s/img) | Full compile (s/img) | Regional compile (s/img) | Full compile: first call (s) | Regional compile: first call (s) |" in markdown
    assert re.search(r"\| int8( †)? \| regional compile \|", markdown)


def test_the_old_variant_spelling_still_works_with_one_deprecation_line(tmp_path, capsys):
    assert main(["bench", "--variant", "tiny", "--formats", "bf16", "--compile", "off", "--repeats", "1", "--warmup", "0", "--resolution", "64", "--quiet", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "deprecated: --variant is now --base" in captured.err and captured.out == ""
    assert json.loads((tmp_path / "bench-tiny.json").read_text())["variant"] == "tiny"
