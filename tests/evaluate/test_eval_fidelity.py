"""Transformer fidelity: recording the reference's transformer calls, storing them, replaying them."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import SIZE, STEPS
from PIL import Image

from flux2_int8.evaluate.fidelity import TrajectoryRecorder, image_tokens, load_trajectory, replay, save_trajectory
from flux2_int8.generate import generate_image


@pytest.fixture(scope="module")
def reference_pipeline(tiny_base):
    from flux2_int8 import load_pipeline

    pipeline = load_pipeline(tiny_base, device="cpu", dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def edit_calls(reference_pipeline):
    """The reference transformer's calls while editing a 64x64 image (one reference input)."""
    recorder = TrajectoryRecorder()
    source = Image.new("RGB", (SIZE, SIZE), (200, 30, 30))
    with recorder.attached(reference_pipeline.transformer):
        generate_image(reference_pipeline, "Make the car yellow", [source], seed=3, steps=STEPS, guidance=1.0, width=SIZE, height=SIZE)
    return recorder.calls


def test_recorder_captures_one_call_per_step_with_reference_tokens(edit_calls, reference_pipeline):
    assert len(edit_calls) == STEPS
    tokens = (SIZE // 16) ** 2  # 8x VAE, 2x2 packing
    for call in edit_calls:
        assert set(call) == {"hidden_states", "encoder_hidden_states", "timestep", "img_ids", "txt_ids", "output"}
        assert call["hidden_states"].shape[1] == 2 * tokens  # the latents, then the reference image's tokens
        assert image_tokens(call["img_ids"]) == tokens
    assert edit_calls[0]["timestep"] != edit_calls[1]["timestep"]
    assert not reference_pipeline.transformer._forward_hooks  # detached afterwards


def test_trajectory_round_trips_and_stores_repeated_tensors_once(edit_calls, tmp_path):
    path = save_trajectory(tmp_path / "t" / "case.safetensors", edit_calls)
    loaded = load_trajectory(path)
    assert len(loaded) == len(edit_calls)
    for original, restored in zip(edit_calls, loaded):
        assert original.keys() == restored.keys()
        assert all(torch.equal(original[name], restored[name]) for name in original)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = list(handle.keys())
    assert sum(name.endswith("encoder_hidden_states") for name in names) == 1  # the prompt embedding repeats
    assert sum(name.endswith("hidden_states") and "encoder" not in name for name in names) == STEPS


def test_replaying_the_reference_transformer_gives_zero_error(edit_calls, reference_pipeline):
    errors = replay(reference_pipeline.transformer, edit_calls)
    assert len(errors) == STEPS
    assert max(errors) < 1e-6


def test_replaying_an_int8_transformer_gives_a_small_nonzero_error(edit_calls, int8_recipes, tiny_base):
    from flux2_int8 import load_transformer

    candidate = load_transformer(int8_recipes["int8"], config=str(tiny_base / "transformer"), dtype=torch.float32)
    errors = replay(candidate, edit_calls)
    assert len(errors) == STEPS
    assert all(0 < error < 0.5 for error in errors)


def test_unreadable_trajectory_names_the_file(tmp_path):
    from flux2_int8.errors import Flux2Int8Error

    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(Flux2Int8Error, match="broken.safetensors: not a readable trajectory file"):
        load_trajectory(path)
