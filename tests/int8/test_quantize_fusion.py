"""Under Inductor the activation quantization fuses into the op that produces the activation.

The module mirrors a FLUX.2 block's input to q/k/v: LayerNorm without affine, then the
adaLN modulation `(1 + scale) * norm(x) + shift`, then an `Int8Linear`. The generated
code must hold one kernel that computes the norm, the modulation and the quantization
(divide, round, clamp) before the GEMM, so the float activation never reaches memory.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch._inductor.utils import run_and_get_code

from flux2_int8.int8 import Int8Linear


class ModulatedInput(nn.Module):
    def __init__(self, features: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features, elementwise_affine=False, eps=1e-6)
        self.linear = Int8Linear(features, out_features)

    def forward(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.linear((1 + scale) * self.norm(x) + shift)


def generated_kernels(code: str) -> dict[str, str]:
    """Kernel name -> its C++ source, for every kernel Inductor generated for the CPU."""
    found = re.finditer(r"^(cpp_fused_\w+) = async_compile\.cpp_pybinding\(.*?'''\)", code, flags=re.S | re.M)
    return {match.group(1): match.group(0) for match in found}


@pytest.mark.parametrize("backend", ["int_mm", "emulated", "triton_prequant"])
def test_quantization_fuses_into_the_norm_and_modulation_kernel(backend):
    if backend == "triton_prequant":
        pytest.importorskip("triton", reason="the Triton backends need the optional triton package")
    generator = torch.Generator().manual_seed(0)
    module = ModulatedInput(64, 48)
    module.linear.weight.data = torch.randint(-127, 128, (48, 64), generator=generator, dtype=torch.int8)
    module.linear.weight_scale.copy_(torch.rand(48, generator=generator) * 1e-2)
    module.linear.input_scale.fill_(0.03)
    module.linear.backend = backend
    x, shift, scale = torch.randn(32, 64, generator=generator), torch.randn(64, generator=generator), torch.randn(64, generator=generator)
    torch._dynamo.reset()
    compiled, (code, *_) = run_and_get_code(torch.compile(module, fullgraph=True), x, shift, scale)
    kernels = generated_kernels(code)
    producers = [name for name in kernels if "native_layer_norm" in name]
    assert len(producers) == 1, f"expected one norm kernel, got {list(kernels)}"
    producer = kernels[producers[0]]
    for operation in ("round", "clamp", "div", "mul"):
        assert operation in producers[0], f"{operation} is not fused into {producers[0]}"
    assert ".round()" in producer and "at::vec::minimum" in producer
    assert not any("round" in name for name in kernels if name != producers[0])  # quantized once, there
    if backend != "emulated":  # int8 is what leaves the kernel: the float activation is never stored
        assert "at::vec::convert<int8_t>" in producer
    torch.testing.assert_close(compiled, module(x, shift, scale), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["int_mm", "emulated"])
def test_dynamic_row_amax_and_quantization_fuse_into_the_producer(backend):
    """Dynamic activations: the per-token max and the quantization join the norm's kernel too."""
    generator = torch.Generator().manual_seed(0)
    module = ModulatedInput(64, 48)
    module.linear = Int8Linear(64, 48, activations="dynamic")
    module.linear.weight.data = torch.randint(-127, 128, (48, 64), generator=generator, dtype=torch.int8)
    module.linear.weight_scale.copy_(torch.rand(48, generator=generator) * 1e-2)
    module.linear.backend = backend
    x, shift, scale = torch.randn(32, 64, generator=generator), torch.randn(64, generator=generator), torch.randn(64, generator=generator)
    torch._dynamo.reset()
    compiled, (code, *_) = run_and_get_code(torch.compile(module, fullgraph=True), x, shift, scale)
    producers = [name for name in generated_kernels(code) if "native_layer_norm" in name]
    assert len(producers) == 1, f"expected one norm kernel, got {list(generated_kernels(code))}"
    for operation in ("amax", "abs", "round", "clamp"):
        assert operation in producers[0], f"{operation} is not fused into {producers[0]}"
    torch.testing.assert_close(compiled, module(x, shift, scale), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("features, group, activations", [(64, 16, "static"), (256, 256, "dynamic")])
def test_convrot_rotation_and_quantization_fuse_into_the_producer(features, group, activations):
    """Traced, the rotation is a Walsh-Hadamard butterfly of additions (no GEMM call): it joins the
    norm's kernel with the quantization, so neither the float nor the rotated x reaches memory."""
    generator = torch.Generator().manual_seed(0)
    module = ModulatedInput(features, 48)
    module.linear = Int8Linear(features, 48, activations=activations, rotation_group_size=group)
    module.linear.weight.data = torch.randint(-127, 128, (48, features), generator=generator, dtype=torch.int8)
    module.linear.weight_scale.copy_(torch.rand(48, generator=generator) * 1e-2)
    if activations == "static":
        module.linear.input_scale.fill_(0.03)
    module.linear.backend = "int_mm"
    x, shift, scale = torch.randn(32, features, generator=generator), torch.randn(features, generator=generator), torch.randn(features, generator=generator)
    torch._dynamo.reset()
    compiled, (code, *_) = run_and_get_code(torch.compile(module, fullgraph=True), x, shift, scale)
    producers = [name for name in generated_kernels(code) if "native_layer_norm" in name]
    assert len(producers) == 1, f"expected one norm kernel, got {list(generated_kernels(code))}"
    for operation in ("stack", "sub", "round", "clamp"):  # the butterfly's stages, then the quantization
        assert operation in producers[0], f"{operation} is not fused into {producers[0]}"
    assert "extern_kernels.mm" not in code
    # The eager rotation is a GEMM (sums in another order): a tie may round one step apart.
    torch.testing.assert_close(compiled, module(x, shift, scale), rtol=1e-4, atol=1e-4)
