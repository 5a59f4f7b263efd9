"""The eager CPU default (`onednn`): oneDNN's int8 GEMM on a packed weight, the same floats as `int_mm` bit for bit.

Row counts on both sides of `FUSED_EPILOGUE_MIN_ROWS` take oneDNN's fused rescale or the
unit-scale accumulator; both must equal `int_mm`, which the exactness tests pin to integer math.
The packed copy is derived data: it follows every change of the weight and never leaves the layer.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from flux2_int8.int8 import Int8Linear, backends, kernels

pytestmark = pytest.mark.skipif(not backends.ONEDNN_INSTALLED, reason="torch built without oneDNN")


def operands(rows: int, k: int, n: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, k, generator=generator) * torch.logspace(-1, 1, k)).to(dtype)
    weight = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=generator)
    return x, weight, torch.rand(n, generator=generator) * 1e-2, torch.randn(n, generator=generator).to(dtype)


@pytest.mark.parametrize("rows", [1, 3, 8, 15, 16, 17, 64, 300])
@pytest.mark.parametrize("k, n", [(32, 32), (96, 160), (256, 72)])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_onednn_gives_the_floats_of_int_mm(rows, k, n, mode):
    for dtype, with_bias in [(torch.bfloat16, True), (torch.float32, False), (torch.float16, True)]:
        x, weight, weight_scale, bias = operands(rows, k, n, dtype, seed=rows + k)
        scale = torch.tensor(0.021) if mode == "static" else None
        bias = bias if with_bias else None
        got = backends.onednn_linear(x, weight, weight_scale, scale, bias)
        assert got.dtype == dtype and torch.equal(got, kernels.int_mm_linear(x, weight, weight_scale, scale, bias))


def onednn_layer(bias: bool = False) -> tuple[Int8Linear, torch.Tensor, torch.Tensor]:
    """A static 64 -> 48 layer forced onto `onednn`, an input for it, and its int8 weight."""
    layer = Int8Linear(64, 48, bias=bias)
    x, weight, weight_scale, bias_vector = operands(20, 64, 48, torch.float32)
    layer.weight.data = weight
    if bias:
        layer.bias.data = bias_vector
    layer.weight_scale.copy_(weight_scale)
    layer.input_scale.fill_(0.02)
    layer.backend = "onednn"
    return layer, x, weight


def test_the_packed_weight_follows_every_change_of_the_weight():
    layer, x, weight = onednn_layer(bias=True)

    def expected() -> torch.Tensor:
        return kernels.int_mm_linear(x, layer.weight, layer.weight_scale, layer.input_scale, layer.bias)

    assert torch.equal(layer(x), expected())
    with torch.no_grad():
        layer.weight.mul_(-1)  # in place through the Parameter (load_state_dict writes so)
    assert torch.equal(layer(x), expected())
    layer.load_state_dict({**layer.state_dict(), "weight": torch.flip(weight, dims=[1])})
    assert torch.equal(layer(x), expected())
    layer.weight = torch.nn.Parameter(torch.roll(weight, 1, dims=0), requires_grad=False)  # a new Parameter (LoRA fuse does so)
    assert torch.equal(layer(x), expected())


def test_the_packed_weight_stays_out_of_state_dicts_copies_and_pickles():
    layer, x, _ = onednn_layer()
    before = layer(x)
    assert "_onednn_weight" in layer.__dict__
    assert set(layer.state_dict()) == {"weight", "weight_scale", "input_scale"}
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert "_onednn_weight" not in twin.__dict__ and torch.equal(twin(x), before)


def test_a_cpu_onednn_cannot_serve_runs_the_same_math_through_int_mm(monkeypatch):
    def refused(*args, **kwargs):
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(backends, "_PROBE", [])
    monkeypatch.setattr(backends, "pack_weight_for_onednn", refused)  # the probe packs first
    assert not backends.onednn_runs()
    layer, x, weight = onednn_layer()
    assert torch.equal(layer(x), kernels.int_mm_linear(x, weight, layer.weight_scale, layer.input_scale, None))
    assert "_onednn_weight" not in layer.__dict__


def test_auto_takes_onednn_eagerly_on_vnni_cpus_and_int_mm_while_compiling(monkeypatch):
    monkeypatch.setattr(backends, "CPU_HAS_VNNI", True)
    monkeypatch.setattr(backends, "_PROBE", [(True, True)])
    assert backends.pick_backend(torch.device("cpu"), 3072, 3072) == "onednn"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert backends.pick_backend(torch.device("cpu"), 3072, 3072) == "int_mm"
