"""fuse_qkv_projections: one GEMM for q/k/v gives the unfused model's output, and compiles whole."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from flux2_int8 import load_transformer
from flux2_int8.errors import Flux2Int8Error
from flux2_int8.int8 import Fp8Linear, Int8Linear, set_int8_backend
from flux2_int8.int8.fusion import fuse_qkv_projections
from flux2_int8.testing.checkpoints import int8_state, write_bfl
from flux2_int8.evaluate.metrics import relative_error


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory, tiny_model, tiny_amax):
    return write_bfl(tmp_path_factory.mktemp("qkv") / "q.safetensors", int8_state(tiny_model, tiny_amax))


def run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def has_any(model, name: str) -> bool:
    return any(hasattr(block.attn, name) for block in model.transformer_blocks)


def test_fused_int8_model_gives_the_unfused_output(int8_file, tiny_inputs):
    unfused = load_transformer(int8_file, dtype=torch.float32)
    fused = load_transformer(int8_file, dtype=torch.float32)
    assert fuse_qkv_projections(fused) == len(fused.transformer_blocks)
    attention = fused.transformer_blocks[0].attn
    inner = unfused.transformer_blocks[0].attn.to_q.out_features
    assert isinstance(attention.to_qkv, Int8Linear) and attention.to_qkv.out_features == 3 * inner
    assert isinstance(attention.to_added_qkv, Int8Linear) and attention.fused_projections
    assert not has_any(fused, "to_q") and not has_any(fused, "add_k_proj")  # weights are not held twice
    assert relative_error(run(fused, tiny_inputs), run(unfused, tiny_inputs)) < 1e-6
    assert fuse_qkv_projections(fused) == 0  # already fused: nothing to do


def test_dynamic_layers_fuse_and_give_the_unfused_output(int8_file, tiny_inputs):
    """Per-token scales are per row of the shared input, so q, k and v fuse just as well."""
    unfused = load_transformer(int8_file, dtype=torch.float32, activations="dynamic")
    fused = load_transformer(int8_file, dtype=torch.float32, activations="dynamic")
    assert fuse_qkv_projections(fused) == len(fused.transformer_blocks)
    assert fused.transformer_blocks[0].attn.to_qkv.activations == "dynamic"
    assert relative_error(run(fused, tiny_inputs), run(unfused, tiny_inputs)) < 1e-6


def test_fp8_layers_fuse_and_give_the_unfused_output_exactly(tmp_path, tiny_model, tiny_amax, tiny_inputs):
    """A LoKr made for the fused q/k/v needs it on FP8 models too; concatenating float8 rows changes no product."""
    from flux2_int8.quantization.export import fp8_state_dict

    path = write_bfl(tmp_path / "fp8.safetensors", fp8_state_dict(tiny_model, tiny_amax))
    unfused = load_transformer(path, dtype=torch.float32)
    fused = load_transformer(path, dtype=torch.float32)
    assert fuse_qkv_projections(fused) == len(fused.transformer_blocks)
    attention = fused.transformer_blocks[0].attn
    assert isinstance(attention.to_qkv, Fp8Linear) and attention.to_qkv.weight.dtype == torch.float8_e4m3fn
    assert attention.to_qkv.has_input_scale and isinstance(attention.to_added_qkv, Fp8Linear)
    assert torch.equal(run(fused, tiny_inputs), run(unfused, tiny_inputs))


def test_differing_input_scales_are_refused_and_the_model_is_left_unchanged(int8_file, tiny_inputs):
    model = load_transformer(int8_file, dtype=torch.float32)
    before = run(model, tiny_inputs)
    last = len(model.transformer_blocks) - 1
    layer = model.transformer_blocks[last].attn.add_v_proj
    shared_scale = layer.input_scale  # the loader may share one tensor between q, k and v
    layer.input_scale = shared_scale * 2
    with pytest.raises(Flux2Int8Error, match=rf"transformer_blocks\.{last}\.attn\.\{{add_q_proj,add_k_proj,add_v_proj\}}: their input_scale values differ"):
        fuse_qkv_projections(model)
    assert not has_any(model, "to_qkv") and not any(block.attn.fused_projections for block in model.transformer_blocks)
    layer.input_scale = shared_scale
    assert relative_error(run(model, tiny_inputs), before) == 0


def test_float_layers_fuse_like_diffusers(tiny_model, tiny_inputs, tiny_config):
    from diffusers import Flux2Transformer2DModel

    fused = Flux2Transformer2DModel.from_config(tiny_config).float().eval()
    fused.load_state_dict(tiny_model.state_dict())
    assert fuse_qkv_projections(fused) == len(fused.transformer_blocks)
    assert isinstance(fused.transformer_blocks[0].attn.to_qkv, torch.nn.Linear)
    assert relative_error(run(fused, tiny_inputs), run(tiny_model, tiny_inputs)) < 1e-6


def test_a_processor_that_ignores_fused_layers_is_refused(int8_file):
    model = load_transformer(int8_file, dtype=torch.float32)
    model.transformer_blocks[0].attn.processor = AttnProcessor2_0()
    with pytest.raises(Flux2Int8Error, match="AttnProcessor2_0 does not read fused projections"):
        fuse_qkv_projections(model)


def test_fused_transformer_on_the_triton_op_traces_without_graph_breaks(int8_file, tiny_inputs):
    """Dynamo sees every linear as one flux2_int8.w8a8_linear op in a single graph.

    On CPU the op runs its float32 emulation; the whole-model compile uses the
    aot_eager backend (fake tensors and functionalization, as Inductor sees the op)
    because an Inductor build of the tiny transformer takes ~35 s on two cores;
    single layers are compiled with Inductor in test_triton_w8a8.py. The backend is the
    one `auto` picks under torch.compile on CUDA.
    """
    pytest.importorskip("triton", reason="the Triton backends need the optional triton package")
    model = load_transformer(int8_file, dtype=torch.float32)
    eager_unfused = run(model, tiny_inputs)
    fuse_qkv_projections(model)
    set_int8_backend(model, "triton_prequant")
    inputs = dict(tiny_inputs, return_dict=False)
    explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    assert str(explanation.graphs[0].code).count("flux2_int8.w8a8_linear") == sum(isinstance(m, Int8Linear) for m in model.modules())
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    assert relative_error(run(compiled, tiny_inputs), eager_unfused) < 1e-6
