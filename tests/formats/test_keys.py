"""BFL <-> diffusers names: the table covers real klein layouts and round-trips exactly."""

from __future__ import annotations

import pytest
import torch
from diffusers import Flux2Transformer2DModel

from flux2_int8.formats.keys import bfl_tensor_to_diffusers, diffusers_to_bfl, map_bfl_module, split_param, strip_prefix
from flux2_int8.variants import KLEIN_4B, KLEIN_9B


@pytest.mark.parametrize("architecture", [KLEIN_4B, KLEIN_9B], ids=lambda a: a.name)
def test_real_klein_key_sets_convert_both_ways(architecture):
    with torch.device("meta"):
        model = Flux2Transformer2DModel.from_config(architecture.transformer_config())
    diffusers_state = model.state_dict()
    bfl_state = diffusers_to_bfl(diffusers_state)
    hidden = architecture.hidden_size
    assert bfl_state["double_blocks.0.img_attn.qkv.weight"].shape == (3 * hidden, hidden)
    assert bfl_state["single_blocks.0.linear1.weight"].shape == (3 * hidden + 2 * 3 * hidden, hidden)
    assert bfl_state["double_blocks.0.img_attn.norm.query_norm.scale"].shape == (128,)
    assert f"single_blocks.{architecture.num_single_layers - 1}.linear2.weight" in bfl_state
    back = {}
    for key, tensor in bfl_state.items():
        module, param = split_param(key)
        back.update(bfl_tensor_to_diffusers(map_bfl_module(module), param, tensor))
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in diffusers_state.items()}


def test_qkv_rows_and_their_scales_split_in_order_and_input_scale_is_shared():
    weight = torch.arange(6 * 2).reshape(6, 2)
    row_scale = torch.arange(6.0).reshape(6, 1)
    mapping = map_bfl_module("double_blocks.3.txt_attn.qkv")
    parts = bfl_tensor_to_diffusers(mapping, "weight", weight)
    assert list(parts) == [f"transformer_blocks.3.attn.add_{p}_proj.weight" for p in "qkv"]
    assert torch.equal(parts["transformer_blocks.3.attn.add_k_proj.weight"], weight[2:4])
    scales = bfl_tensor_to_diffusers(mapping, "weight_scale", row_scale)
    assert torch.equal(scales["transformer_blocks.3.attn.add_v_proj.weight_scale"], row_scale[4:])
    shared = bfl_tensor_to_diffusers(mapping, "input_scale", torch.tensor(0.5))
    assert all(float(v) == 0.5 for v in shared.values()) and len(shared) == 3
    one_value = bfl_tensor_to_diffusers(mapping, "weight_scale", torch.tensor([0.25]))
    assert all(v.shape == (1,) for v in one_value.values())


def test_final_modulation_swaps_shift_and_scale_halves_with_its_scales():
    mapping = map_bfl_module("final_layer.adaLN_modulation.1")
    weight = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # BFL: shift rows, then scale rows
    assert torch.equal(bfl_tensor_to_diffusers(mapping, "weight", weight)["norm_out.linear.weight"], torch.tensor([[3.0], [4.0], [1.0], [2.0]]))
    scale = torch.tensor([10.0, 20.0, 30.0, 40.0])
    assert torch.equal(bfl_tensor_to_diffusers(mapping, "weight_scale", scale)["norm_out.linear.weight_scale"], torch.tensor([30.0, 40.0, 10.0, 20.0]))
    back = diffusers_to_bfl({"norm_out.linear.weight": torch.tensor([[3.0], [4.0], [1.0], [2.0]])})
    assert torch.equal(back["final_layer.adaLN_modulation.1.weight"], weight)


def test_qkv_input_scales_merge_to_their_max_when_writing():
    state = {f"transformer_blocks.0.attn.to_{p}.input_scale": torch.tensor(v) for p, v in zip("qkv", (0.1, 0.3, 0.2))}
    assert float(diffusers_to_bfl(state)["double_blocks.0.img_attn.qkv.input_scale"]) == pytest.approx(0.3)


def test_comfyui_prefix_and_old_scale_spellings():
    assert strip_prefix("model.diffusion_model.img_in.weight") == "img_in.weight"
    assert split_param("single_blocks.1.linear1.scale_weight") == ("single_blocks.1.linear1", "weight_scale")
    assert split_param("single_blocks.1.linear1.scale_input") == ("single_blocks.1.linear1", "input_scale")
    assert map_bfl_module("double_blocks.0.img_attn.unknown") is None
