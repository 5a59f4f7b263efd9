"""The tiny klein pipeline: it loads offline, generates, edits, and its BFL file has official names."""

from __future__ import annotations

import os

# Nothing here may touch the network. huggingface_hub reads this only when first imported, so it
# depends on collection order; `local_files_only=True` on every load is what guarantees it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import Flux2KleinPipeline
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from flux2_int8.tiny import (
    BFL_CHECKPOINT_FILE,
    TINY_TEXT_ENCODER_CONFIG,
    TINY_TRANSFORMER_CONFIG,
    TINY_VAE_CONFIG,
    make_tiny_pipeline,
    tiny_pipeline_cache,
)

TRANSFORMER_WEIGHTS = Path("transformer") / "diffusion_pytorch_model.safetensors"
TOKENIZER_FILE = Path("tokenizer") / "tokenizer.json"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tensors this small gain nothing from threads; on a busy 2-core machine threads make calls 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def pipe(tiny_dir: Path) -> Flux2KleinPipeline:
    pipeline = Flux2KleinPipeline.from_pretrained(tiny_dir, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(pipe: Flux2KleinPipeline, prompt: str, seed: int = 0, **kwargs) -> np.ndarray:
    """One 2-step image as an array. `prompt` must be a keyword: the call's first parameter is `image`."""
    call = {"height": 64, "width": 64, "num_inference_steps": 2, "guidance_scale": 1.0, **kwargs}
    result = pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **call)
    return np.asarray(result.images[0])


def reference_image(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_config_dimensions_agree() -> None:
    head_dim = TINY_TRANSFORMER_CONFIG["attention_head_dim"]
    assert sum(TINY_TRANSFORMER_CONFIG["axes_dims_rope"]) == head_dim
    assert TINY_TRANSFORMER_CONFIG["in_channels"] == 4 * TINY_VAE_CONFIG["latent_channels"]
    assert TINY_TRANSFORMER_CONFIG["joint_attention_dim"] == 3 * TINY_TEXT_ENCODER_CONFIG["hidden_size"]
    assert TINY_TEXT_ENCODER_CONFIG["num_hidden_layers"] > 27


def test_folder_loads_as_klein(pipe: Flux2KleinPipeline) -> None:
    assert pipe.config.is_distilled is True
    assert pipe.transformer.dtype == torch.float32
    assert pipe.vae_scale_factor == 8
    assert pipe.scheduler.config.use_dynamic_shifting is True


def test_tokenizer_chat_template_and_special_tokens(pipe: Flux2KleinPipeline) -> None:
    tokenizer = pipe.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a red cube"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text == "<|im_start|>user\na red cube<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"]) == [
        TINY_TEXT_ENCODER_CONFIG["bos_token_id"],
        TINY_TEXT_ENCODER_CONFIG["eos_token_id"],
    ]
    assert tokenizer.pad_token == "<|endoftext|>"
    assert len(tokenizer) <= TINY_TEXT_ENCODER_CONFIG["vocab_size"]


def test_text_to_image_depends_on_prompt_and_seed(pipe: Flux2KleinPipeline) -> None:
    cube = generate(pipe, "a red cube")
    assert cube.shape == (64, 64, 3)
    assert cube.std() > 0
    assert np.array_equal(cube, generate(pipe, "a red cube"))
    assert not np.array_equal(cube, generate(pipe, "a blue sphere"))
    assert not np.array_equal(cube, generate(pipe, "a red cube", seed=1))


def test_non_square_size(pipe: Flux2KleinPipeline) -> None:
    assert generate(pipe, "a wide view", height=64, width=96).shape == (64, 96, 3)


def test_edit_with_one_reference_image(pipe: Flux2KleinPipeline) -> None:
    plain = generate(pipe, "make it blue")
    edited = generate(pipe, "make it blue", image=[reference_image(1)])
    assert edited.shape == (64, 64, 3)
    assert not np.array_equal(plain, edited)


def test_composition_with_two_reference_images(pipe: Flux2KleinPipeline) -> None:
    # Without height/width the output takes the first reference's size.
    images = [reference_image(1, (96, 64)), reference_image(2)]
    assert generate(pipe, "combine them", height=None, width=None, image=images).shape == (64, 96, 3)


def test_bfl_checkpoint_has_official_names_in_bf16(tiny_dir: Path) -> None:
    path = tiny_dir / BFL_CHECKPOINT_FILE
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "bfl-bf16" and metadata["source"] == "flux2_int8.tiny.make_tiny_pipeline"
    bfl = load_file(path)
    assert {tensor.dtype for tensor in bfl.values()} == {torch.bfloat16}
    assert bfl["double_blocks.0.img_attn.qkv.weight"].shape == (3 * 32, 32)
    assert bfl["single_blocks.0.linear1.weight"].shape == (3 * 32 + 2 * 96, 32)
    assert bfl["final_layer.adaLN_modulation.1.weight"].shape == (2 * 32, 32)
    assert "double_blocks.1.txt_attn.norm.key_norm.scale" in bfl
    assert not any(key.startswith(("transformer_blocks.", "model.")) for key in bfl)


def test_bfl_checkpoint_matches_folder_weights(tiny_dir: Path) -> None:
    bfl = load_file(tiny_dir / BFL_CHECKPOINT_FILE)
    folder = {k: v.to(torch.bfloat16) for k, v in load_file(tiny_dir / TRANSFORMER_WEIGHTS).items()}
    attn = "transformer_blocks.0.attn"
    qkv = torch.cat([folder[f"{attn}.to_q.weight"], folder[f"{attn}.to_k.weight"], folder[f"{attn}.to_v.weight"]])
    assert torch.equal(bfl["double_blocks.0.img_attn.qkv.weight"], qkv)
    scale, shift = folder["norm_out.linear.weight"].chunk(2)
    assert torch.equal(bfl["final_layer.adaLN_modulation.1.weight"], torch.cat([shift, scale]))


def test_same_seed_same_weights_and_caller_rng_untouched(tmp_path: Path, tiny_dir: Path) -> None:
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    other = make_tiny_pipeline(tmp_path / "again", seed=0)
    assert torch.equal(torch.rand(3), expected_draw)

    first, second = load_file(tiny_dir / TRANSFORMER_WEIGHTS), load_file(other / TRANSFORMER_WEIGHTS)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert (tiny_dir / TOKENIZER_FILE).read_bytes() == (other / TOKENIZER_FILE).read_bytes()


def test_rebuild_only_when_incomplete_or_different(tmp_path: Path) -> None:
    folder = make_tiny_pipeline(tmp_path, seed=0)
    weights = folder / TRANSFORMER_WEIGHTS
    built_at = weights.stat().st_mtime_ns
    assert make_tiny_pipeline(folder, seed=0) == folder
    assert weights.stat().st_mtime_ns == built_at

    (folder / "tiny.json").unlink()  # what an interrupted build leaves
    make_tiny_pipeline(folder, seed=0)
    assert (folder / "tiny.json").exists()

    before = load_file(weights)["proj_out.weight"]
    make_tiny_pipeline(folder, seed=1)
    assert not torch.equal(load_file(weights)["proj_out.weight"], before)


def test_base_variant_runs_with_guidance(tmp_path: Path) -> None:
    base = Flux2KleinPipeline.from_pretrained(make_tiny_pipeline(tmp_path, distilled=False), local_files_only=True)
    base.set_progress_bar_config(disable=True)
    assert base.config.is_distilled is False
    assert generate(base, "a red cube", guidance_scale=4.0).shape == (64, 64, 3)


def test_cache_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX2_INT8_CACHE", str(tmp_path))
    cached = tiny_pipeline_cache(seed=0)
    assert cached.parent == tmp_path
    assert (cached / "tiny.json").exists()
    assert tiny_pipeline_cache(seed=0) == cached
    assert [path.name for path in tmp_path.iterdir()] == [cached.name]  # no staging folders left behind
