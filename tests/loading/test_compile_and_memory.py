"""The loaded INT8 transformer compiles whole (no graph breaks), and loading stays within memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch
from diffusers import Flux2Transformer2DModel
from safetensors.torch import save_file

from flux2_int8 import load_transformer
from flux2_int8.formats.keys import diffusers_to_bfl
from flux2_int8.testing.checkpoints import int8_state, meta_int8_state, write_bfl
from flux2_int8.evaluate.metrics import relative_error


def test_int8_transformer_compiles_fullgraph_without_graph_breaks(tmp_path, tiny_model, tiny_inputs, tiny_amax):
    model = load_transformer(write_bfl(tmp_path / "q.safetensors", int8_state(tiny_model, tiny_amax)), dtype=torch.float32)
    inputs = dict(tiny_inputs, return_dict=False)
    explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()
    with torch.no_grad():
        eager = model(**inputs)[0]
        compiled = torch.compile(model, fullgraph=True)(**inputs)[0]
    assert relative_error(compiled, eager) < 1e-5


_CHILD = textwrap.dedent(
    """
    import os, resource, sys, torch
    from flux2_int8 import load_transformer
    import flux2_int8.loading.transformer, diffusers  # imports are not the loader's memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = load_transformer(sys.argv[1], dtype=torch.bfloat16)
    for tensor in model.state_dict().values():  # touch every page: mapped weights count once read
        tensor.reshape(-1)[::512].float().sum()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print((peak - before) / os.path.getsize(sys.argv[1]))
    """
)


def test_peak_host_memory_while_loading_is_within_1_3x_the_file(tmp_path):
    config = dict(in_channels=128, num_layers=2, num_single_layers=4, attention_head_dim=128, num_attention_heads=8, joint_attention_dim=1024, timestep_guidance_channels=256, axes_dims_rope=(32, 32, 32, 32), guidance_embeds=False)
    with torch.device("meta"):
        skeleton = Flux2Transformer2DModel.from_config(config)
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for key, meta in diffusers_to_bfl(meta_int8_state(skeleton)).items():
        if meta.dtype == torch.int8:
            tensors[key] = torch.randint(-127, 128, meta.shape, dtype=torch.int8, generator=generator)
        elif key.endswith("_scale"):
            tensors[key] = torch.full(meta.shape, 0.01)
        else:
            tensors[key] = torch.randn(meta.shape, generator=generator).to(meta.dtype)
    path = tmp_path / "medium.safetensors"
    save_file(tensors, str(path))
    del tensors
    assert path.stat().st_size > 100e6
    ratio = float(subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    assert ratio <= 1.3, f"loading peaked at {ratio:.2f}x the file size"
