"""LoRA'd (and LoKr'd) INT8 transformer under torch.compile: one graph (fullgraph, so 0 breaks), no recompile
when adapter weights (set_adapters) or the adapter tensors themselves change."""

from __future__ import annotations

import torch
from lokr_helpers import write_lokr
from lora_helpers import draw_lora, run, write_lora

from flux2_int8.evaluate.metrics import relative_error


class CountingBackend:
    """A torch.compile backend that runs the captured graph as is and counts compilations."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph_module, example_inputs):  # noqa: ANN001
        self.compilations += 1
        return graph_module.forward


def test_compiled_lora_is_one_graph_and_never_recompiles_for_new_weights(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    torch._dynamo.reset()
    first, _ = write_lora("kohya", tmp_path, draw_lora(tiny_config, seed=8), name="first")
    second, _ = write_lora("ai-toolkit", tmp_path, draw_lora(tiny_config, seed=9), name="second")
    int8_pipeline.load_lora_weights(str(first), adapter_name="first")
    int8_pipeline.load_lora_weights(str(second), adapter_name="second")
    int8_pipeline.set_adapters(["first", "second"], adapter_weights=[1.0, 0.5])
    transformer = int8_pipeline.transformer
    backend = CountingBackend()
    compiled = torch.compile(transformer, backend=backend, fullgraph=True)  # fullgraph: a graph break raises

    assert relative_error(run(compiled, tiny_inputs, torch.float32), run(transformer, tiny_inputs, torch.float32)) < 1e-6
    assert backend.compilations == 1

    int8_pipeline.set_adapters(["first", "second"], adapter_weights=[0.3, 1.7])
    assert relative_error(run(compiled, tiny_inputs, torch.float32), run(transformer, tiny_inputs, torch.float32)) < 1e-6
    layer = transformer.transformer_blocks[0].attn.to_q
    with torch.no_grad():
        layer.lora_B["first"].weight.mul_(-1.0)  # new adapter values in place, as PEFT's hotswap writes them
    assert relative_error(run(compiled, tiny_inputs, torch.float32), run(transformer, tiny_inputs, torch.float32)) < 1e-6
    assert backend.compilations == 1


def test_compiled_lokr_is_one_graph_and_never_recompiles_for_new_weights(tmp_path, tiny_config, tiny_inputs, int8_pipeline):
    torch._dynamo.reset()
    first, _ = write_lokr("ai-toolkit", tmp_path, tiny_config, seed=8, name="first")
    second, _ = write_lokr("ai-toolkit", tmp_path, tiny_config, seed=9, name="second")
    int8_pipeline.load_lora_weights(str(first), adapter_name="first")
    int8_pipeline.load_lora_weights(str(second), adapter_name="second")
    int8_pipeline.set_adapters(["first", "second"], adapter_weights=[1.0, 0.5])
    transformer = int8_pipeline.transformer
    backend = CountingBackend()
    compiled = torch.compile(transformer, backend=backend, fullgraph=True)

    assert relative_error(run(compiled, tiny_inputs, torch.float32), run(transformer, tiny_inputs, torch.float32)) < 1e-6
    assert backend.compilations == 1

    int8_pipeline.set_adapters(["first", "second"], adapter_weights=[0.3, 1.7])
    assert relative_error(run(compiled, tiny_inputs, torch.float32), run(transformer, tiny_inputs, torch.float32)) < 1e-6
    layer = transformer.transformer_blocks[0].attn.to_qkv
    with torch.no_grad():
        layer.lokr_w1["first"].mul_(-1.0)  # new adapter values in place
    assert relative_error(run(compiled, tiny_inputs, torch.float32), run(transformer, tiny_inputs, torch.float32)) < 1e-6
    assert backend.compilations == 1
