"""`bench --check`: every INT8 backend against the reference on the model's linear shapes, no pytest needed."""

from __future__ import annotations

import json

import pytest
import torch

from flux2_int8.bench.check import CHECK_BACKENDS, relative_tolerance
from flux2_int8.bench.microbench import klein_linear_shapes
from flux2_int8.cli import main
from flux2_int8.int8 import backends
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG
from flux2_int8.variants import KLEIN_9B


def _cases(out):
    document = json.loads(next(out.glob("bench-*.json")).read_text())
    return document, document["check"]


def test_tiny_check_passes_for_every_backend_at_every_m_and_dtype(tmp_path, capsys):
    assert main(["bench", "--base", "tiny", "--check", "--device", "cpu", "--out", str(tmp_path)]) == 0
    document, check = _cases(tmp_path)
    shapes = klein_linear_shapes({"tiny": dict(TINY_TRANSFORMER_CONFIG)}, fuse_qkv_modes=(False, True))
    assert check["passed"] and check["failed"] == 0 and document["runs"] == [] and document["status"] == "complete"
    assert check["tokens"] == [1, 16, 17, 4608] and check["dtypes"] == ["bfloat16", "float16"] and check["backends"] == list(CHECK_BACKENDS)
    assert check["activations"] == ["static", "dynamic"]
    assert len(check["cases"]) == len(shapes) * 4 * 2 * 2 * len(CHECK_BACKENDS)
    assert {(case["in_features"], case["out_features"]) for case in check["cases"]} == {(s.in_features, s.out_features) for s in shapes}
    for case in check["cases"]:
        assert case["passed"] and 0 < case["worst_tolerance_ratio"] <= 1 and case["max_abs_error"] > 0 and case["relative_error"] < 2 ** -7
    auto = {case["ran"] for case in check["cases"] if case["backend"] == "auto"}
    assert auto == {backends.pick_backend(torch.device("cpu"), 32, 32)}
    assert {case["ran"] for case in check["cases"] if case["backend"] == "triton"} == {"triton (emulation)"}
    markdown = (tmp_path / "bench-tiny.md").read_text()
    assert "**PASS**" in markdown and "| triton_prequant | triton_prequant (emulation) | dynamic | float16 | 4608 |" in markdown


def test_klein_9b_shapes_pass_on_cpu_with_a_short_m_list(tmp_path):
    """Full-size shapes (K up to 16384, N up to 36864) with random weights; M = 1, 16 and 4608 are left to the
    command's own run (docs/benchmarks.md) and the GPU: M = 17 is the int_mm padding edge."""
    command = ["bench", "--base", "klein-9b", "--random-weights", "--check", "--device", "cpu", "--check-tokens", "17", "--out", str(tmp_path)]
    assert main(command) == 0
    _, check = _cases(tmp_path)
    shapes = {(case["in_features"], case["out_features"]) for case in check["cases"]}
    assert (12288, 4096) in shapes and (4096, 36864) in shapes and (4096, 12288) in shapes  # fused q/k/v: [3 x 4096, 4096]
    assert check["passed"] and {case["backend"] for case in check["cases"]} == set(CHECK_BACKENDS)
    assert {case["activations"] for case in check["cases"]} == {"static", "dynamic"}


def test_a_backend_off_by_more_than_one_step_fails_the_check_with_exit_1(tmp_path, monkeypatch, capsys):
    real = backends.BACKENDS["int_mm"]
    monkeypatch.setitem(backends.BACKENDS, "int_mm", lambda x, *rest: real(x, *rest) * (1 + 4 * relative_tolerance(x.dtype)))
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--base", "tiny", "--check", "--device", "cpu", "--check-tokens", "17", "--int8-backends", "int_mm,triton", "--out", str(tmp_path)])
    assert stopped.value.code == 1
    _, check = _cases(tmp_path)
    assert not check["passed"] and {case["backend"] for case in check["cases"] if not case["passed"]} == {"int_mm"}
    assert "FAIL" in (tmp_path / "bench-tiny.md").read_text() and "check FAILED" in capsys.readouterr().err
