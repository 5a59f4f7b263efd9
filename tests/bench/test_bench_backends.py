"""`bench --int8-backends` and `--fuse-qkv`: one run compares INT8 backends and fused q/k/v.

The tiny run below records which transformer each row timed and which INT8 kernels ran
inside it, so the rows are checked against what actually executed, not against their labels.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from flux2_int8.bench import pipeline_bench
from flux2_int8.bench.pipeline_bench import (
    INT8_BACKENDS,
    BenchSettings,
    configure_transformer,
    run_benchmark,
)
from flux2_int8.bench.random_weights import random_transformer
from flux2_int8.cli import main
from flux2_int8.commands import bench as bench_command
from flux2_int8.errors import ConfigError
from flux2_int8.int8 import Int8Linear, backends
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG
from flux2_int8.tiny import random_transformer_inputs
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.variants import Architecture

LABELS = ["bf16", "bf16 (fused q/k/v)", "int8 (emulated)", "int8 (emulated, fused q/k/v)", "int8 (reference)", "int8 (reference, fused q/k/v)"]
PLANS = [("bf16", None, False), ("bf16", None, True), ("int8", "emulated", False), ("int8", "emulated", True), ("int8", "reference", False), ("int8", "reference", True)]
INNER = TINY_TRANSFORMER_CONFIG["num_attention_heads"] * TINY_TRANSFORMER_CONFIG["attention_head_dim"]
FUSED_QKV_WEIGHT = (3 * INNER, INNER)  # [N, K] of to_qkv / to_added_qkv: only a fused tiny model has it
SMALL = Architecture("small", num_layers=1, num_single_layers=1, num_attention_heads=1, joint_attention_dim=96, in_channels=32, timestep_guidance_channels=32)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One CLI run: bf16 and int8, backends emulated and reference, unfused and fused, eager.

    Records every transformer the bench built (in order, one per plan) and every INT8
    kernel call as (index of the transformer being timed, backend, weight shape).
    """
    models: list[nn.Module] = []
    calls: list[tuple[int, str, tuple[int, ...]]] = []
    original = pipeline_bench._BuiltInSource.transformer

    def capture(self, fmt, activations="auto"):  # type: ignore[no-untyped-def]
        models.append(original(self, fmt, activations))
        return models[-1]

    def recorder(name):  # type: ignore[no-untyped-def]
        kernel = backends.BACKENDS[name]

        def record(x, weight, *rest):  # type: ignore[no-untyped-def]
            calls.append((len(models) - 1, name, tuple(weight.shape)))
            return kernel(x, weight, *rest)

        return record

    out = tmp_path_factory.mktemp("backends")
    command = ["bench", "--base", "tiny", "--formats", "bf16,int8", "--int8-backends", "emulated,reference", "--fuse-qkv", "off,on"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_bench._BuiltInSource, "transformer", capture)
        for name in ("emulated", "reference"):
            patch.setitem(backends.BACKENDS, name, recorder(name))
        assert main([*command, "--compile", "off", "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    return json.loads((out / "bench-tiny.json").read_text()), (out / "bench-tiny.md").read_text(), models, calls


def test_every_plan_is_a_row_with_its_backend_and_fusion(compared):
    document, _, _, _ = compared
    runs = document["runs"]
    assert [run["label"] for run in runs] == LABELS
    assert [(run["format"], run["int8_backend"], run["fused_qkv"]) for run in runs] == PLANS
    assert [run["fused_attentions"] for run in runs] == [2 * fused for _, _, fused in PLANS]  # tiny has 2 double blocks
    for run in runs:
        assert run["compiled"] is False and run["image"]["measured"] and run["step"]["median_s"] > 0 and run["load_s"] > 0
    assert document["settings"]["int8_backends"] == ["emulated", "reference"] and document["settings"]["fuse_qkv_modes"] == [False, True]
    assert "--int8-backends emulated,reference --fuse-qkv off,on" in document["command"]


def test_summary_rows_compare_every_plan_with_unfused_bf16(compared):
    document, _, _, _ = compared
    rows = document["summary"]
    assert [(row["label"], row["format"], row["int8_backend"], row["fused_qkv"]) for row in rows] == [(label, *plan) for label, plan in zip(LABELS, PLANS)]
    baseline = rows[0]["images_per_s"]
    for row in rows:
        assert row["eager_s_per_image"] > 0 and row["compiled_s_per_image"] is None
        assert row["speedup_vs_bf16"] == pytest.approx(row["images_per_s"] / baseline)


def test_markdown_names_every_row(compared):
    _, markdown, _, _ = compared
    for label in LABELS:
        assert f"| tiny | {label} |" in markdown  # the published-shape table
        assert f"| {label} | eager |" in markdown  # the details table
    assert "- INT8 backends: emulated, reference; q/k/v fused: off, on" in markdown


def test_fused_rows_timed_a_fused_transformer(compared):
    """The structure of each timed transformer, and the kernel calls made while it was timed."""
    document, _, models, calls = compared
    assert len(models) == len(document["runs"])
    for index, run in enumerate(document["runs"]):
        attention = models[index].transformer_blocks[0].attn
        fused = run["fused_qkv"]
        assert hasattr(attention, "to_qkv") == fused and hasattr(attention, "to_added_qkv") == fused
        assert hasattr(attention, "to_q") != fused and bool(getattr(attention, "fused_projections", False)) == fused
        called = [(backend, shape) for model_index, backend, shape in calls if model_index == index]
        if run["format"] == "bf16":
            assert not called and type(getattr(attention, "to_qkv" if fused else "to_q")) is nn.Linear
            continue
        assert {backend for backend, _ in called} == {run["int8_backend"]}
        assert all(layer.backend == run["int8_backend"] for layer in models[index].modules() if isinstance(layer, Int8Linear))
        assert (FUSED_QKV_WEIGHT in {shape for _, shape in called}) == fused
        assert ((INNER, INNER) in {shape for _, shape in called})  # to_out runs in both


def test_triton_backend_without_triton_on_cuda_fails_before_any_model_is_built(monkeypatch, tmp_path, capsys):
    def no_model(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a model was built")

    monkeypatch.setattr(backends, "TRITON_INSTALLED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pipeline_bench, "_make_source", no_model)
    out = tmp_path / "out"
    assert main(["bench", "--base", "klein-9b", "--random-weights", "--int8-backends", "int_mm,triton", "--device", "cuda", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: --int8-backends int_mm,triton: 'triton' on CUDA needs the triton package") and "flux2-int8[gpu]" in error
    assert not out.exists()
    settings = BenchSettings(variant="klein-9b", random_weights=True, int8_backends=("triton_prequant",), device="cuda")
    with pytest.raises(ConfigError, match="'triton_prequant' on CUDA needs the triton package"):
        run_benchmark(settings)


def test_unknown_backend_is_refused_by_the_library_too():
    with pytest.raises(ConfigError, match="unknown INT8 backend 'int4'"):
        run_benchmark(BenchSettings(variant="tiny", int8_backends=("int4",), device="cpu"))


def test_help_lists_the_backends_the_kernels_have():
    """The CLI spells the names out (its --help imports no torch); they must stay the kernels' names."""
    assert tuple(bench_command.INT8_BACKEND_NAMES.split(", ")) == INT8_BACKENDS


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
def test_random_transformer_fuses_and_keeps_its_output(fmt):
    """Random INT8 weights share one input_scale per q/k/v group, as calibrated files do, so they fuse."""
    model = random_transformer(SMALL, fmt, "cpu")
    attention = model.transformer_blocks[0].attn
    if fmt == "int8":
        for names in (("to_q", "to_k", "to_v"), ("add_q_proj", "add_k_proj", "add_v_proj")):
            scales = [getattr(attention, name).input_scale for name in names]
            assert all(torch.equal(scale, scales[0]) for scale in scales)
    inputs = random_transformer_inputs(SMALL.transformer_config(), dtype=torch.bfloat16)
    with torch.no_grad():
        before = model(**inputs, return_dict=False)[0]
        assert configure_transformer(model, "emulated" if fmt == "int8" else None, fuse_qkv=True) == 1
        after = model(**inputs, return_dict=False)[0]
    assert isinstance(attention.to_qkv, Int8Linear if fmt == "int8" else nn.Linear) and not hasattr(attention, "to_q")
    assert relative_error(after, before) < 1e-2  # the same products, one GEMM (bf16 rounding may differ)
