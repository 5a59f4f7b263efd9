"""The fused Triton W8A8 kernel against exact integer math (CPU: Triton's interpreter), and its custom op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from flux2_int8.errors import Flux2Int8Error
from flux2_int8.int8 import Int8Linear, backends, quantize_activation
from flux2_int8.int8.kernels import row_scale, reference_linear
from flux2_int8.evaluate.metrics import relative_error

triton = pytest.importorskip("triton", reason="the Triton backends need the optional triton package")
from flux2_int8.int8 import triton_w8a8  # noqa: E402  (after the skip: it imports triton)

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
if not ON_GPU:
    assert type(triton_w8a8._w8a8_kernel).__name__ == "InterpretedFunction", "set TRITON_INTERPRET=1 before importing triton_w8a8 (tests/int8/conftest.py does)"

# Small tiles, so the interpreter stays fast and edge tiles (partial M, N, K) are exercised.
SMALL_TILE = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}
SHAPES = [(1, 64, 96), (5, 40, 24), (16, 128, 64), (33, 72, 40), (70, 256, 130)]


def random_operands(m: int, k: int, n: int, dtype: torch.dtype, bias: bool, seed: int, input_scale: float = 0.02):
    """Fresh x [M, K] (some values saturate), weight int8 [N, K], scales, optional bias [N]."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=generator) * 1.2
    x[0, : k // 8] *= 40.0  # beyond 127 * input_scale: must clamp
    weight = torch.randint(-128, 128, (n, k), generator=generator, dtype=torch.int8)
    weight_scale = torch.rand(n, generator=generator) * 1e-2 + 1e-3
    bias_tensor = torch.randn(n, generator=generator).to(dtype) if bias else None
    operands = (x.to(dtype), weight, weight_scale, torch.tensor(input_scale), bias_tensor)
    return tuple(None if t is None else t.to(DEVICE) for t in operands)


def exact_accumulator(x: torch.Tensor, weight: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
    """clamp(round(x / s)) @ weight.T in int64 on the CPU: no rounding anywhere."""
    return quantize_activation(x.cpu(), input_scale.cpu()).long() @ weight.cpu().long().t()


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kernel_integers_are_exact(m, k, n, dtype):
    """float32 out, no bias: the epilogue is one fp32 multiply, so y must equal acc * (s * w_s) bit for bit."""
    x, weight, weight_scale, input_scale, _ = random_operands(m, k, n, dtype, False, seed=m * k + n)
    y = triton_w8a8.launch_w8a8(x, weight, weight_scale, input_scale, None, torch.float32, SMALL_TILE)
    expected = exact_accumulator(x, weight, input_scale).float() * (input_scale.cpu() * weight_scale.cpu())
    torch.testing.assert_close(y.cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kernel_matches_reference_linear_with_bias(m, k, n, dtype):
    x, weight, weight_scale, input_scale, bias = random_operands(m, k, n, dtype, True, seed=7 * m + k)
    y = triton_w8a8.launch_w8a8(x, weight, weight_scale, input_scale, bias, dtype, SMALL_TILE)
    expected = reference_linear(x.cpu(), weight.cpu(), weight_scale.cpu(), input_scale.cpu(), bias.cpu())
    assert y.dtype == dtype
    if dtype == torch.float32:
        assert relative_error(y.cpu(), expected) < 1e-6
    else:  # both rounded once to bf16 from values that differ by float32 rounding: at most one bf16 step
        torch.testing.assert_close(y.cpu().float(), expected.float(), rtol=2**-7, atol=1e-3)


def test_rounding_is_half_to_even_and_saturates_like_torch_round():
    """s = 0.25 and x on quarter steps: x / s lands exactly on .5 ties, which round to even."""
    input_scale = torch.tensor(0.25)
    values = torch.tensor([0.125, 0.375, -0.125, -0.375, 0.625, 31.875, -32.125, 33.0, -40.0, 0.1, -0.2, 5.0, 6.875, -6.875, 0.0, 100.0])
    x = values.repeat(3, 1).to(torch.bfloat16)  # [3, 16]
    identity = torch.eye(16, dtype=torch.int8)  # y = q * s * 4 = q
    y = triton_w8a8.launch_w8a8(x.to(DEVICE), identity.to(DEVICE), torch.full((16,), 4.0, device=DEVICE), input_scale.to(DEVICE), None, torch.float32, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 1})
    assert y.cpu()[0].tolist() == quantize_activation(x, input_scale)[0].float().tolist()
    assert y.cpu()[0, :10].tolist() == [0.0, 2.0, 0.0, -2.0, 2.0, 127.0, -128.0, 127.0, -128.0, 0.0]


@pytest.mark.parametrize("tile", [SMALL_TILE, {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 64, "GROUP_M": 8}])
def test_prequantized_int8_input_gives_the_same_output(tile):
    x, weight, weight_scale, input_scale, bias = random_operands(37, 96, 50, torch.bfloat16, True, seed=3)
    fused = triton_w8a8.launch_w8a8(x, weight, weight_scale, input_scale, bias, torch.bfloat16, tile)
    prequantized = triton_w8a8.launch_w8a8(quantize_activation(x, input_scale), weight, weight_scale, input_scale, bias, torch.bfloat16, tile)
    torch.testing.assert_close(prequantized, fused, rtol=0, atol=0)


def test_custom_op_passes_opcheck_and_matches_the_kernel_math():
    """Schema, fake-tensor (meta) implementation and AOT dispatch, as torch.compile will use them."""
    x, weight, weight_scale, input_scale, bias = random_operands(20, 64, 48, torch.float32, True, seed=11)
    for activation in (x, quantize_activation(x, input_scale)):
        args = (activation, weight, weight_scale, input_scale, bias, torch.float32)
        torch.library.opcheck(torch.ops.flux2_int8.w8a8_linear.default, args)
        assert relative_error(torch.ops.flux2_int8.w8a8_linear(*args).cpu(), reference_linear(x.cpu(), weight.cpu(), weight_scale.cpu(), input_scale.cpu(), bias.cpu())) < 1e-6


@pytest.mark.parametrize("backend", ["triton", "triton_prequant"])
def test_int8_linear_on_a_triton_backend_compiles_fullgraph_and_matches_eager(backend):
    _, weight, weight_scale, input_scale, bias = random_operands(1, 64, 48, torch.float32, True, seed=5)
    layer = Int8Linear(64, 48, bias=True).to(DEVICE)
    layer.weight.data, layer.bias.data = weight, bias
    layer.weight_scale.copy_(weight_scale)
    layer.input_scale.copy_(input_scale)
    layer.backend = backend
    x = torch.randn(2, 12, 64, device=DEVICE)
    explanation = torch._dynamo.explain(layer)(x)
    assert explanation.graph_break_count == 0 and "flux2_int8.w8a8_linear" in str(explanation.graphs[0].code)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(x), layer(x), rtol=1e-6, atol=1e-6)
    assert relative_error(layer(x).cpu(), reference_linear(x.reshape(-1, 64).cpu(), weight.cpu(), weight_scale.cpu(), input_scale.cpu(), bias.cpu()).reshape(2, 12, 48)) < 1e-6


def test_configs_are_pruned_by_m_and_shared_memory():
    configs = triton_w8a8.LARGE_M_CONFIGS + triton_w8a8.SMALL_M_CONFIGS
    ampere_consumer = 101376  # sm_86 shared memory per block
    large = triton_w8a8.prune_configs(configs, 4608, 2, ampere_consumer)
    small = triton_w8a8.prune_configs(configs, 1, 2, ampere_consumer)
    assert large and all(c.kwargs["BLOCK_M"] >= 64 for c in large)
    assert small and all(c.kwargs["BLOCK_M"] <= 32 for c in small)
    assert all(triton_w8a8.shared_memory_bytes(c, 2) <= ampere_consumer for c in large + small)
    hopper = triton_w8a8.prune_configs(configs, 4608, 2, 232448)
    assert len(hopper) > len(large) and any(c.kwargs["BLOCK_N"] == 256 and c.kwargs["BLOCK_K"] == 128 for c in hopper)
    assert triton_w8a8.prune_configs(configs, 4608, 4, 1024)  # never empty, even when nothing fits


def test_auto_uses_triton_on_cuda_quantizing_in_the_load_eagerly_and_in_the_producer_when_compiled(monkeypatch):
    monkeypatch.setattr(backends, "TRITON_IN_AUTO", True)
    monkeypatch.setattr(backends, "CPU_HAS_VNNI", False)
    cuda = torch.device("cuda")
    assert backends.pick_backend(cuda, 3072, 18432) == "triton"  # M <= 16: no padding needed
    assert backends.pick_backend(cuda, 3072, 3072) == "triton"
    assert backends.pick_backend(torch.device("cpu"), 3072, 3072) == "emulated"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert backends.pick_backend(cuda, 3072, 3072) == "triton_prequant"
    monkeypatch.setattr(backends, "TRITON_IN_AUTO", False)  # the default, or no triton
    assert backends.pick_backend(cuda, 3072, 3072) == "int_mm"


def test_without_triton_cpu_emulates_and_cuda_is_refused_clearly(monkeypatch):
    monkeypatch.setattr(backends, "TRITON_INSTALLED", False)
    x, weight, weight_scale, input_scale, bias = (t.cpu() if t is not None else None for t in random_operands(9, 32, 16, torch.float32, True, seed=2))
    y = backends.triton_linear(x, weight, weight_scale, input_scale, bias)
    assert relative_error(y, reference_linear(x, weight, weight_scale, input_scale, bias)) < 1e-6
    with pytest.raises(Flux2Int8Error, match=r"pip install 'flux2-int8\[gpu\]'"):
        backends._triton_op(torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("m", [1, 16, 512, 4608])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autotuned_kernel_on_klein_shapes(m, dtype):
    """The autotuned configs (Hopper/Ampere tiles) on klein 4B shapes: K 3072, N 9216 (qkv) and N 3072 with K 9216."""
    for k, n in ((3072, 9216), (9216, 3072)):
        x, weight, weight_scale, input_scale, _ = random_operands(m, k, n, dtype, False, seed=m + k)
        y = triton_w8a8.launch_w8a8(x, weight, weight_scale, input_scale, None, torch.float32)
        expected = (quantize_activation(x, input_scale).double() @ weight.double().t()).float() * (input_scale * weight_scale)
        assert relative_error(y, expected) < 1e-6  # acc beyond 2**24 rounds once to float32


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["max-autotune-no-cudagraphs", "reduce-overhead"])
def test_compiled_modes_and_cuda_graphs_match_eager(mode):
    x, weight, weight_scale, input_scale, bias = random_operands(256, 512, 384, torch.bfloat16, True, seed=1)
    layer = Int8Linear(512, 384, bias=True).to("cuda")
    layer.weight.data, layer.bias.data = weight, bias
    layer.weight_scale.copy_(weight_scale)
    layer.input_scale.copy_(input_scale)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, mode=mode)
    for _ in range(3):  # CUDA graphs record on a later call than the first
        out = compiled(x).clone()
    torch.testing.assert_close(out, layer(x), rtol=2**-7, atol=1e-3)


_COMPILE_FOR_GPUS = textwrap.dedent(
    """
    import json, re, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from flux2_int8.int8 import triton_w8a8 as tw

    kernel, names = tw._w8a8_kernel, tw._w8a8_kernel.arg_names
    types = {"x_ptr": "*bf16", "weight_ptr": "*i8", "weight_scale_ptr": "*fp32", "input_scale_ptr": "*fp32", "bias_ptr": "*fp32", "out_ptr": "*bf16"}
    found = {}
    # sm_90 and sm_80 with a static input scale; sm_90 again with dynamic per-row scales.
    for name, arch, config, per_row in (("90", 90, tw.LARGE_M_CONFIGS[6], False), ("80", 80, tw.LARGE_M_CONFIGS[4], False), ("90-dynamic", 90, tw.LARGE_M_CONFIGS[6], True)):
        constants = {"stride_xk": 1, "stride_wk": 1, "stride_on": 1, "QUANTIZE_X": True, "HAS_BIAS": True, "EVEN_K": True, "PER_ROW_SCALE": per_row, **config.kwargs}
        signature = {name: "constexpr" if name in constants else types.get(name, "i32") for name in names}
        aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names) if name.endswith("_ptr") or name in ("N", "K", "stride_xm", "stride_wn", "stride_om")}
        source = ASTSource(kernel, signature, {(names.index(k),): v for k, v in constants.items()}, aligned)
        ptx = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": config.num_warps, "num_stages": config.num_stages}).asm["ptx"]
        found[name] = {
            "wgmma_s8": len(re.findall(r"wgmma\\.mma_async[^\\n]*\\.s32\\.s8\\.s8", ptx)),
            "mma_s8": len(re.findall(r"mma\\.sync[^\\n]*\\.s32\\.s8\\.s8", ptx)),
            "div_rn": len(re.findall(r"div\\.rn\\.f32", ptx)),
            "round_add": len(re.findall(r"add\\.f32[^\\n]*0f4B400000", ptx)),
            "round_sub": len(re.findall(r"(?:add\\.f32[^\\n]*0fCB400000|sub\\.f32[^\\n]*0f4B400000)", ptx)),
        }
    print(json.dumps(found))
    """
)


@pytest.mark.skipif(ON_GPU, reason="on a GPU the kernel runs for real above")
def test_kernel_compiles_for_hopper_and_ampere_int8_tensor_cores():
    """Triton compiles for sm_90 and sm_80 without a GPU: the checks the interpreter skips
    (constexpr globals, dot operand layouts) and the instructions that matter."""
    environment = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    child = subprocess.run([sys.executable, "-c", _COMPILE_FOR_GPUS], capture_output=True, text=True, env=environment, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout.strip().splitlines()[-1])
    assert found["90"]["wgmma_s8"] > 0 and found["80"]["mma_s8"] > 0  # int8 tensor cores: wgmma on Hopper, mma on Ampere
    assert found["90-dynamic"]["wgmma_s8"] > 0  # per-row (dynamic) scales keep the tensor-core path
    for counts in found.values():  # quantization: IEEE division, and the rounding adds survive optimization
        assert counts["div_rn"] > 0 and counts["round_add"] > 0 and counts["round_add"] == counts["round_sub"]


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("prequantized", [False, True])
def test_kernel_with_per_row_scales_is_exact(m, k, n, prequantized):
    """Dynamic activations: input_scale [M, 1], one scale per row, in the load and the epilogue."""
    x, weight, weight_scale, _, bias = random_operands(m, k, n, torch.float32, True, seed=23)
    scales = row_scale(x)
    activation = quantize_activation(x, scales) if prequantized else x
    y = triton_w8a8.launch_w8a8(activation, weight, weight_scale, scales, bias, torch.float32, SMALL_TILE)
    accumulator = quantize_activation(x.cpu(), scales.cpu()).long() @ weight.cpu().long().t()
    expected = accumulator.double() * scales.cpu().double() * weight_scale.cpu().double() + bias.cpu().double()
    assert relative_error(y.cpu(), expected) < 1e-6
