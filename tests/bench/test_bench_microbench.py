"""The linear-layer microbenchmark: shapes from the real models, timings and derived rates."""

from __future__ import annotations

import pytest

from flux2_int8.bench.microbench import LinearShape, device_peak, klein_linear_shapes, run_microbench
from flux2_int8.variants import KLEIN_4B, KLEIN_9B


def _shapes_of(arch):
    """The block linear shapes (K, N) of one size, written out from FORMATS.md (diffusers splits q/k/v)."""
    hidden = arch.hidden_size
    mlp = int(hidden * arch.mlp_ratio)
    return {(hidden, hidden), (hidden, 2 * mlp), (mlp, hidden), (hidden, 3 * hidden + 2 * mlp), (hidden + mlp, hidden)}


def test_klein_shapes_are_the_distinct_block_linears_of_4b_and_9b():
    shapes = klein_linear_shapes({"klein-4b": KLEIN_4B.transformer_config(), "klein-9b": KLEIN_9B.transformer_config()})
    found = {(shape.in_features, shape.out_features) for shape in shapes}
    assert found == _shapes_of(KLEIN_4B) | _shapes_of(KLEIN_9B)
    assert (4096, 36864) in found and (16384, 4096) in found  # 9B single-block linear1 / linear2 of FORMATS.md
    by_shape = {(s.in_features, s.out_features): s.layers for s in shapes}
    assert "klein-9b single_transformer_blocks.*.attn.to_qkv_mlp_proj" in by_shape[(4096, 36864)]
    assert all("embedder" not in name and "modulation" not in name for layers in by_shape.values() for name in layers)


def test_fused_qkv_adds_the_fused_projection_shapes():
    configs = {"klein-4b": KLEIN_4B.transformer_config(), "klein-9b": KLEIN_9B.transformer_config()}
    unfused = {(s.in_features, s.out_features) for s in klein_linear_shapes(configs)}
    both = klein_linear_shapes(configs, fuse_qkv_modes=(False, True))
    by_shape = {(s.in_features, s.out_features): s.layers for s in both}
    assert set(by_shape) == unfused | {(3072, 9216), (4096, 12288)}  # docs/kernels.md: 4B and 9B to_qkv after fusion
    assert by_shape[(4096, 12288)] == ("klein-9b transformer_blocks.*.attn.to_qkv", "klein-9b transformer_blocks.*.attn.to_added_qkv")


def test_microbench_times_every_backend_beside_one_bf16_timing():
    result = run_microbench([LinearShape(64, 96)], tokens=32, device="cpu", compile_modes=(False,), repeats=2, warmup=1, int8_backends=("emulated", "reference"))
    (timing,) = result.timings
    assert list(timing.int8) == ["emulated", "reference"] and result.int8_backends == ("emulated", "reference")
    for backend in ("emulated", "reference"):
        assert timing.int8_speedup(backend) == pytest.approx(timing.bf16.median_s / timing.int8[backend].median_s)
    assert list(timing.to_dict(None)["int8"]) == ["emulated", "reference"]


def test_microbench_times_both_layers_eager_and_compiled_on_cpu():
    shape = LinearShape(64, 96, ("test",))
    result = run_microbench([shape], tokens=32, device="cpu", compile_modes=(False, True), repeats=3, warmup=1)
    assert [timing.compiled for timing in result.timings] == [False, True]
    assert result.peak is None and result.int8_backends == ("auto",)  # no datasheet peak for a CPU
    for timing in result.timings:
        assert 0 < timing.bf16.min_s <= timing.bf16.median_s <= timing.bf16.max_s
        assert list(timing.int8) == ["auto"] and 0 < timing.int8["auto"].min_s <= timing.int8["auto"].median_s <= timing.int8["auto"].max_s
        assert timing.operations == 2 * 32 * 64 * 96
        assert timing.bf16_tflops == pytest.approx(timing.operations / timing.bf16.median_s / 1e12)
        assert timing.int8_speedup("auto") == pytest.approx(timing.int8_tops("auto") / timing.bf16_tflops)
        row = timing.to_dict(None)
        assert row["bf16_fraction_of_peak"] is None and row["layers"] == ["test"]
        assert row["int8"]["auto"]["fraction_of_peak"] is None and row["int8"]["auto"]["tops"] == pytest.approx(timing.int8_tops("auto"))


def test_device_peaks_match_names_as_cuda_reports_them():
    assert device_peak("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert device_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert device_peak("NVIDIA H200").int8_tops == pytest.approx(2 * device_peak("NVIDIA H200").bf16_tflops, rel=0.01)
    assert device_peak("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert device_peak("NVIDIA L40S").name == "L40S" and device_peak("NVIDIA L4").name == "L4"
    assert device_peak("Some Future GPU") is None


def test_microbench_times_convrot_rows_beside_the_plain_ones_against_one_bf16_timing():
    """`bench --rotation off,convrot:16,convrot:64`: a row per rotation and mode; a G that does not divide K has none, and says so."""
    from flux2_int8.bench.report import microbench_table

    shapes = [LinearShape(64, 96), LinearShape(48, 32)]
    result = run_microbench(shapes, tokens=32, device="cpu", compile_modes=(False,), repeats=1, warmup=1, int8_backends=("emulated", "reference"), rotations=(None, 16, 64))
    assert [(t.shape.in_features, t.rotation) for t in result.timings] == [(64, None), (64, 16), (64, 64), (48, None), (48, 16)]
    assert result.skipped == [{"what": "48x32 convrot:64", "why": "64 does not divide K = 48 (the layer stays plain)"}]
    first = result.timings[:3]
    assert all(t.bf16 is first[0].bf16 for t in first)  # one BF16 timing per shape and mode, shared by its rows
    assert all(list(t.int8) == ["emulated", "reference"] for t in result.timings)
    document = result.to_dict()
    assert document["rotations"] == ["off", "convrot:16", "convrot:64"]
    assert [row["rotation"] for row in document["timings"]] == ["off", "convrot:16", "convrot:64", "off", "convrot:16"]
    table = microbench_table(document)
    assert "| Rotation |" in table[2] and "| eager | convrot:16 |" in table[5]
    assert "Rotation" not in microbench_table({**document, "rotations": ["off"]})[2]  # plain runs keep their columns


def test_the_rotated_microbench_layer_computes_the_plain_product():
    """Its weight is rotated before quantization and its input at run time: x W^T again, to INT8 rounding."""
    import torch

    from flux2_int8.bench.microbench import _int8_layer

    weight, x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0)), torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    want = x.double() @ weight.double().T
    for group in (None, 16, 64):
        layer = _int8_layer(weight, float(x.abs().amax()) * 1.5, group)
        assert layer.rotation_group_size == group
        got = layer(x).double()
        assert torch.linalg.norm(got - want) / torch.linalg.norm(want) < 0.03, group
