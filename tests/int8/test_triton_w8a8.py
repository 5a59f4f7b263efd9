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
from flux2_int8.int8 import rotation as rotation_module
from flux2_int8.int8.kernels import emulated_w8a8, row_scale, reference_linear
from flux2_int8.evaluate.metrics import relative_error

triton = pytest.importorskip("triton", reason="the Triton backends need the optional triton package")
import triton.language as tl  # noqa: E402
from flux2_int8.int8 import triton_rotation, triton_w8a8  # noqa: E402  (after the skip: they import triton)

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
    from flux2_int8.int8 import triton_w8a8 as tw, triton_rotation as tr

    def compile(kernel, types, constants, arch, config, aligned_names):
        names = kernel.arg_names
        signature = {name: "constexpr" if name in constants else types.get(name, "i32") for name in names}
        aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names) if name.endswith("_ptr") or name in aligned_names}
        source = ASTSource(kernel, signature, {(names.index(k),): v for k, v in constants.items()}, aligned)
        return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": config.num_warps, "num_stages": config.num_stages}).asm["ptx"]

    types = {"x_ptr": "*bf16", "weight_ptr": "*i8", "weight_scale_ptr": "*fp32", "input_scale_ptr": "*fp32", "bias_ptr": "*fp32", "out_ptr": "*bf16", "rotation_norm": "fp32"}
    plain = {"ROTATION_GROUP": 0, "SYLVESTER": False, "SPLITS": 1, "BF16_DOT": True}
    found = {}
    # sm_90 and sm_80 with a static input scale; sm_90 again with dynamic per-row scales;
    # ConvRot: rotated in the load, G = 256 (regular) on sm_90, G = 32 (Sylvester) on sm_80.
    for name, arch, config, per_row, rotation in (
        ("90", 90, tw.LARGE_M_CONFIGS[6], False, plain),
        ("80", 80, tw.LARGE_M_CONFIGS[4], False, plain),
        ("90-dynamic", 90, tw.LARGE_M_CONFIGS[6], True, plain),
        ("90-convrot-256", 90, tw.ROTATION_CONFIGS[0], True, {**plain, "ROTATION_GROUP": 256}),
        ("80-convrot-32", 80, tw.LARGE_M_CONFIGS[4], False, {**plain, "ROTATION_GROUP": 32, "SYLVESTER": True}),
    ):
        constants = {"stride_xk": 1, "stride_wk": 1, "stride_on": 1, "QUANTIZE_X": True, "HAS_BIAS": True, "EVEN_K": True, "PER_ROW_SCALE": per_row, **rotation, **config.kwargs}
        ptx = compile(tw._w8a8_kernel, types, constants, arch, config, ("N", "K", "stride_xm", "stride_wn", "stride_om"))
        found[name] = {
            "wgmma_s8": len(re.findall(r"wgmma\\.mma_async[^\\n]*\\.s32\\.s8\\.s8", ptx)),
            "mma_s8": len(re.findall(r"mma\\.sync[^\\n]*\\.s32\\.s8\\.s8", ptx)),
            "mma_bf16": len(re.findall(r"mma[^\\n]*\\.f32\\.bf16\\.bf16", ptx)),
            "div_rn": len(re.findall(r"div\\.rn\\.f32", ptx)),
            "round_add": len(re.findall(r"add\\.f32[^\\n]*0f4B400000", ptx)),
            "round_sub": len(re.findall(r"(?:add\\.f32[^\\n]*0fCB400000|sub\\.f32[^\\n]*0f4B400000)", ptx)),
        }
    scale_config = triton.Config({}, num_warps=4, num_stages=2)
    for arch in (90, 80):  # the rotated row-scale kernel (dynamic ConvRot activations), G = 256
        constants = {"stride_xk": 1, "GROUP": 256, "SYLVESTER": False, "SPLITS": 1, "BF16_DOT": True, "EVEN_K": True, "BLOCK_M": 32, "BLOCK_K": 256}
        ptx = compile(tr._rotated_row_scale_kernel, {"x_ptr": "*bf16", "scale_ptr": "*fp32", "norm": "fp32"}, constants, arch, scale_config, ("K", "stride_xm"))
        found[f"row-scale-{arch}"] = {"mma_bf16": len(re.findall(r"mma[^\\n]*\\.f32\\.bf16\\.bf16", ptx)), "div_rn": len(re.findall(r"div\\.rn\\.f32", ptx))}
        constants = {"stride_xk": 1, "stride_ok": 1, "PER_ROW_SCALE": True, "ROTATION_GROUP": 256, "SYLVESTER": False, "SPLITS": 1, "BF16_DOT": True, "BLOCK_M": 32, "BLOCK_K": 256}
        types = {"x_ptr": "*bf16", "input_scale_ptr": "*fp32", "out_ptr": "*i8", "rotation_norm": "fp32"}
        ptx = compile(tw._rotate_quantize_kernel, types, constants, arch, scale_config, ("K", "stride_xm", "stride_om"))
        found[f"rotate-quantize-{arch}"] = {"mma_bf16": len(re.findall(r"mma[^\\n]*\\.f32\\.bf16\\.bf16", ptx)), "div_rn": len(re.findall(r"div\\.rn\\.f32", ptx))}
    print(json.dumps(found))
    """
)


@pytest.mark.skipif(ON_GPU, reason="on a GPU the kernel runs for real above")
def test_kernel_compiles_for_hopper_and_ampere_int8_tensor_cores():
    """Triton compiles for sm_90 and sm_80 without a GPU: the checks the interpreter skips
    (constexpr globals, dot operand layouts, the rotation's reshapes) and the instructions that matter."""
    environment = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    child = subprocess.run([sys.executable, "-c", _COMPILE_FOR_GPUS], capture_output=True, text=True, env=environment, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout.strip().splitlines()[-1])
    assert found["90"]["wgmma_s8"] > 0 and found["80"]["mma_s8"] > 0  # int8 tensor cores: wgmma on Hopper, mma on Ampere
    assert found["90-dynamic"]["wgmma_s8"] > 0  # per-row (dynamic) scales keep the tensor-core path
    assert found["90-convrot-256"]["wgmma_s8"] > 0 and found["80-convrot-32"]["mma_s8"] > 0  # rotated: still int8 tensor cores
    for name in ("90-convrot-256", "80-convrot-32", "row-scale-90", "row-scale-80", "rotate-quantize-90", "rotate-quantize-80"):  # the rotation: bf16 tensor-core products
        assert found[name]["mma_bf16"] > 0, name
    assert found["90"]["mma_bf16"] == 0  # and none in the plain kernel
    for name, counts in found.items():  # quantization: IEEE division, and the rounding adds survive optimization
        assert counts["div_rn"] > 0, name
        if "round_add" in counts:
            assert counts["round_add"] > 0 and counts["round_add"] == counts["round_sub"], name


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


# ConvRot: the rotation inside the kernels, against float64 math with a Hadamard matrix built here.


def float64_hadamard(group: int) -> torch.Tensor:
    """H_G in float64, orthonormal, built independently of `int8.rotation`: powers of 4 regular
    (Kronecker powers of H4), other powers of 2 Sylvester ([[H, H], [H, -H]])."""
    power = group.bit_length() - 1
    if power % 2 == 0:
        h4 = torch.tensor([[1, 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]], dtype=torch.float64)
        matrix = torch.ones(1, 1, dtype=torch.float64)
        for _ in range(power // 2):
            matrix = torch.kron(matrix, h4)
    else:
        matrix = torch.ones(1, 1, dtype=torch.float64)
        for _ in range(power):
            matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)], 0)
    return matrix / group**0.5


def float64_rotated_linear(x, weight, weight_scale, group, input_scale=None, bias=None):
    """Rotate x in float64, quantize (static scale, or amax / 127 per row), integer GEMM, rescale: y float64."""
    rotated = (x.double().reshape(-1, group) @ float64_hadamard(group)).reshape(x.shape)
    if input_scale is None:
        amax = rotated.abs().amax(dim=1, keepdim=True)
        input_scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    else:
        input_scale = input_scale.double()
    quantized = torch.clamp(torch.round(rotated / input_scale), -128, 127).long()
    y = (quantized @ weight.long().t()).double() * input_scale * weight_scale.double()
    return y if bias is None else y + bias.double()


def rotated_operands(m, k, n, dtype, seed):
    x, weight, weight_scale, _, bias = (t.cpu() for t in random_operands(m, k, n, dtype, True, seed))
    return x, weight, weight_scale, bias


# G: regular 4, 16, 64 and Sylvester 8, 32 (BLOCK_K = 64 holds whole groups); one shape per case.
ROTATED_CASES = [(4, 20, 128, 40), (8, 9, 64, 24), (16, 33, 192, 48), (32, 17, 128, 40), (64, 20, 128, 40)]


@pytest.mark.parametrize("group, m, k, n", ROTATED_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("activations", ["static", "dynamic"])
def test_rotated_kernel_matches_a_float64_rotation_then_integer_math(group, m, k, n, dtype, activations):
    """Bound 1e-4 relative: the kernel rotates in float32 (bf16 parts, exact products, float32
    sums: a few ulps from float64), so an integer differs by one only where x_rot / s lies within
    ~1e-6 of a .5 tie, and a dynamic scale by an ulp; the rest is the float32 epilogue (~1e-7)."""
    x, weight, weight_scale, bias = rotated_operands(m, k, n, dtype, seed=group + m)
    rotation = rotation_module.hadamard(group)
    if activations == "static":  # calibrated in the rotated basis, below the max so some values saturate
        input_scale = float64_rotated_scale(x, group).max().float() * 0.8
        scales = input_scale
    else:
        input_scale = None
        scales = triton_rotation.launch_rotated_row_scale(x.to(DEVICE), rotation.to(DEVICE), {"BLOCK_M": 16, "BLOCK_K": 64, "num_warps": 4})
    tile = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 64, "GROUP_M": 2}
    y = triton_w8a8.launch_w8a8(x.to(DEVICE), weight.to(DEVICE), weight_scale.to(DEVICE), scales.to(DEVICE), bias.to(DEVICE), torch.float32, tile, rotation=rotation.to(DEVICE))
    expected = float64_rotated_linear(x, weight, weight_scale, group, input_scale, bias)
    assert relative_error(y.cpu().double(), expected) < 1e-4


def float64_rotated_scale(x, group):
    rotated = (x.double().reshape(-1, group) @ float64_hadamard(group)).reshape(x.shape)
    return rotated.abs().amax(dim=1, keepdim=True) / 127


@pytest.mark.parametrize("activations", ["static", "dynamic"])
def test_rotated_kernel_with_groups_of_256(activations):
    """G = 256 (ConvRot's default): the two 16-wide factors, K tiles of 256, one small shape."""
    x, weight, weight_scale, bias = rotated_operands(18, 512, 32, torch.bfloat16, seed=256)
    rotation = rotation_module.hadamard(256).to(DEVICE)
    input_scale = float64_rotated_scale(x, 256).max().float() * 0.8 if activations == "static" else None
    scales = input_scale if input_scale is not None else triton_rotation.launch_rotated_row_scale(x.to(DEVICE), rotation, {"BLOCK_M": 16, "BLOCK_K": 256, "num_warps": 4})
    y = triton_w8a8.launch_w8a8(x.to(DEVICE), weight.to(DEVICE), weight_scale.to(DEVICE), scales.to(DEVICE), bias.to(DEVICE), torch.float32, {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 256, "GROUP_M": 1}, rotation=rotation)
    assert relative_error(y.cpu().double(), float64_rotated_linear(x, weight, weight_scale, 256, input_scale, bias)) < 1e-4


@triton.jit
def _rotate_rows_kernel(x_ptr, out_ptr, norm, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr, SYLVESTER: tl.constexpr, SPLITS: tl.constexpr):
    rows = tl.arange(0, BLOCK_M)[:, None] * BLOCK_K + tl.arange(0, BLOCK_K)[None, :]
    rotated = triton_rotation._rotate_tile(tl.load(x_ptr + rows), norm, BLOCK_M, BLOCK_K, GROUP, SYLVESTER, SPLITS, False)
    tl.store(out_ptr + rows, rotated)


@pytest.mark.skipif(ON_GPU, reason="the interpreter's float32 dot stands in for the bf16 one here")
@pytest.mark.parametrize("group", [2, 4, 8, 16, 32, 64, 128, 256])
def test_generated_matrix_is_the_hadamard_of_every_group_size(group):
    """Rotating the identity gives the matrix: the kernel's generated signs, Kronecker split and
    transposes equal `rotation.hadamard` (regular for powers of 4, Sylvester otherwise) and the test's own."""
    width = max(group, 16)
    identity = torch.eye(width)[:group] if group >= 16 else torch.eye(16)
    out = torch.empty_like(identity)
    constants = triton_rotation.rotation_constants(identity, rotation_module.hadamard(group))
    _rotate_rows_kernel[(1,)](identity, out, constants["norm"], identity.shape[0], width, group, constants["SYLVESTER"], 3)
    block = out[:group, :group]
    torch.testing.assert_close(block, rotation_module.hadamard(group), rtol=0, atol=1e-7)
    torch.testing.assert_close(block.double(), float64_hadamard(group), rtol=0, atol=1e-7)
    if group < 16:  # the other groups of the tile are rotated alike, nothing leaks between them
        torch.testing.assert_close(out, torch.block_diag(*[rotation_module.hadamard(group)] * (16 // group)), rtol=0, atol=1e-7)


@pytest.mark.parametrize("group", [4, 16, 64, 256])
def test_rotated_row_scale_is_row_scales_rule_bit_for_bit(group):
    """Integer x and G a power of 4 (1/sqrt(G) a power of 2): every rotated value is exact in float32,
    so the kernel's scales must equal `row_scale(rotate(x))` bit for bit, all-zero rows giving 1."""
    generator = torch.Generator().manual_seed(group)
    x = torch.randint(-50, 50, (19, 2 * group), generator=generator).float()
    x[3] = 0.0
    x[7, :group] = 0.0  # one zero group in an otherwise live row
    rotation = rotation_module.hadamard(group)
    for dtype in (torch.bfloat16, torch.float32):
        scales = triton_rotation.launch_rotated_row_scale(x.to(dtype).to(DEVICE), rotation.to(DEVICE), {"BLOCK_M": 16, "BLOCK_K": max(group, 64), "num_warps": 4})
        expected = row_scale(rotation_module.rotate(x.to(dtype), rotation))
        assert scales.shape == (19, 1) and scales.dtype == torch.float32
        assert torch.equal(scales.cpu(), expected) and scales[3].item() == 1.0


def test_rotated_row_scale_keeps_a_nan_row_nan_and_masks_a_short_k():
    x = torch.randn(5, 96)  # K = 96: not a multiple of BLOCK_K = 64, so the last tile is masked
    x[2, 5] = float("nan")
    scales = triton_rotation.launch_rotated_row_scale(x.to(DEVICE), rotation_module.hadamard(32).to(DEVICE), {"BLOCK_M": 16, "BLOCK_K": 64, "num_warps": 4}).cpu()
    assert torch.isnan(scales[2]).all() and torch.isfinite(scales[[0, 1, 3, 4]]).all()
    torch.testing.assert_close(scales[[0, 1, 3, 4]].double(), float64_rotated_scale(x, 32)[[0, 1, 3, 4]], rtol=1e-6, atol=0)


def test_rotated_custom_ops_pass_opcheck_and_fall_back_to_rotate_then_emulate():
    """Off CUDA the op is one rotation GEMM (`rotation.rotate`'s up to G = 64) then `kernels.emulated_w8a8`;
    the rotation argument is optional (every existing call, above, passes six arguments). G = 256 too:
    the fake implementations must trace with the matrix passed in."""
    for group, k in ((16, 64), (256, 256)):
        x, weight, weight_scale, bias = (t.to(DEVICE) for t in rotated_operands(20, k, 48, torch.float32, seed=12))
        rotation = rotation_module.hadamard(group).to(DEVICE)
        scales = torch.ops.flux2_int8.rotated_row_scale(x, rotation)
        torch.library.opcheck(torch.ops.flux2_int8.rotated_row_scale.default, (x, rotation))
        for input_scale in (scales, scales.max()):
            args = (x, weight, weight_scale, input_scale, bias, torch.float32, rotation)
            torch.library.opcheck(torch.ops.flux2_int8.w8a8_linear.default, args)
            y = torch.ops.flux2_int8.w8a8_linear(*args)
            if not ON_GPU and group <= 64:
                assert torch.equal(y, emulated_w8a8(rotation_module.rotate(x, rotation), weight, weight_scale, input_scale, bias, torch.float32))
            assert relative_error(y.cpu().double(), float64_rotated_linear(x.cpu(), weight.cpu(), weight_scale.cpu(), group, input_scale.cpu() if input_scale.dim() == 0 else None, bias.cpu())) < 1e-4


def test_rotation_arguments_are_checked_on_every_device():
    x, weight, weight_scale, bias = rotated_operands(4, 64, 16, torch.float32, seed=1)
    scale = torch.tensor(0.02)
    with pytest.raises(ValueError, match="already quantized"):
        triton_w8a8.w8a8_linear(quantize_activation(x, scale), weight, weight_scale, scale, bias, torch.float32, rotation_module.hadamard(16))
    with pytest.raises(ValueError, match="dividing K; G = 128, K = 64"):
        triton_w8a8.w8a8_linear(x, weight, weight_scale, scale, bias, torch.float32, rotation_module.hadamard(128))
    with pytest.raises(ValueError, match="power of 2"):
        triton_rotation.rotated_row_scale(x, torch.eye(12))
    with pytest.raises(ValueError, match="BLOCK_K 64 must be a multiple of the rotation group 128"):
        wide = torch.randn(4, 256)
        triton_w8a8.launch_w8a8(wide, torch.zeros(8, 256, dtype=torch.int8), torch.ones(8), scale, None, torch.float32, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 64, "GROUP_M": 1}, rotation=rotation_module.hadamard(128))


def test_rotated_launches_prune_to_k_tiles_holding_whole_groups():
    configs = triton_w8a8.LARGE_M_CONFIGS + triton_w8a8.SMALL_M_CONFIGS + triton_w8a8.ROTATION_CONFIGS
    hopper, a100, ampere_consumer = 232448, 167936, 101376
    for limit in (hopper, a100, ampere_consumer):
        for m in (1, 4608):
            for group in (16, 64, 256):
                kept = triton_w8a8.prune_configs(configs, m, 2, limit, group)
                assert kept and all(c.kwargs["BLOCK_K"] % group == 0 for c in kept), (limit, m, group)
                assert all(triton_w8a8.shared_memory_bytes(c, 2) + triton_w8a8.rotation_bytes(c) <= limit for c in kept), (limit, m, group)
            plain = triton_w8a8.prune_configs(configs, m, 2, limit)
            assert not any(c is r for c in plain for r in triton_w8a8.ROTATION_CONFIGS)
    assert any(c.kwargs["BLOCK_M"] >= 64 for c in triton_w8a8.prune_configs(configs, 4608, 2, ampere_consumer, 256))


@pytest.mark.parametrize("group, m, k, n", [(16, 33, 192, 48), (32, 17, 128, 40), (256, 18, 512, 32)])
@pytest.mark.parametrize("activations", ["static", "dynamic"])
def test_rotate_then_quantize_prepass_gives_the_in_load_integers(group, m, k, n, activations):
    """The pre-pass (rotate + quantize once, int8 out) and the GEMM rotating in its load share their
    code, so the int8 GEMM on the pre-pass's output equals the in-load result bit for bit."""
    x, weight, weight_scale, bias = (t.to(DEVICE) for t in rotated_operands(m, k, n, torch.bfloat16, seed=group))
    rotation = rotation_module.hadamard(group).to(DEVICE)
    block_k = max(group, 64)
    scales = triton_rotation.launch_rotated_row_scale(x, rotation, {"BLOCK_M": 16, "BLOCK_K": block_k, "num_warps": 4})
    if activations == "static":
        scales = scales.max() * 0.8
    quantized = triton_w8a8.launch_rotate_quantize(x, rotation, scales, {"BLOCK_M": 16, "BLOCK_K": block_k, "num_warps": 4})
    tile = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": block_k, "GROUP_M": 2}
    in_load = triton_w8a8.launch_w8a8(x, weight, weight_scale, scales, bias, torch.float32, tile, rotation=rotation)
    prequantized = triton_w8a8.launch_w8a8(quantized, weight, weight_scale, scales, bias, torch.float32, tile)
    assert quantized.dtype == torch.int8 and torch.equal(in_load, prequantized)
    expected = torch.clamp(torch.round((x.cpu().double().reshape(-1, group) @ float64_hadamard(group)).reshape(m, k) / scales.cpu().double()), -128, 127)
    differs = quantized.cpu().double() != expected  # only near .5 ties, by one
    assert differs.float().mean() < 1e-3 and (quantized.cpu().double() - expected).abs().max() <= 1
    args = (x, rotation, scales)
    torch.library.opcheck(torch.ops.flux2_int8.rotate_quantize.default, args)
    if not ON_GPU:  # the op off CUDA: rotate, then quantize_activation
        assert torch.equal(torch.ops.flux2_int8.rotate_quantize(*args), quantize_activation(rotation_module.rotate(x, rotation), scales))


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("m", [1, 4608])
@pytest.mark.parametrize("group", [16, 256])
def test_rotated_autotuned_kernels_on_a_klein_shape(m, group):
    """The autotuned rotated GEMM (its configs pruned to BLOCK_K multiple of G), the row-scale kernel and the
    pre-pass on the GPU, K 3072 -> N 3072, against float64 rotation then integer math."""
    x, weight, weight_scale, bias = rotated_operands(m, 3072, 3072, torch.bfloat16, seed=group)
    rotation = rotation_module.hadamard(group).cuda()
    x, weight, weight_scale, bias = x.cuda(), weight.cuda(), weight_scale.cuda(), bias.cuda()
    scales = triton_rotation.rotated_row_scale(x, rotation)
    in_load = triton_w8a8.w8a8_linear(x, weight, weight_scale, scales, bias, torch.float32, rotation)
    prequantized = triton_w8a8.w8a8_linear(triton_w8a8.rotate_quantize(x, rotation, scales), weight, weight_scale, scales, bias, torch.float32)
    expected = float64_rotated_linear(x.cpu(), weight.cpu(), weight_scale.cpu(), group, None, bias.cpu())
    assert relative_error(in_load.cpu().double(), expected) < 1e-4 and relative_error(prequantized.cpu().double(), expected) < 1e-4
