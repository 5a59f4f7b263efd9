"""A tiny random-weight FLUX.2 [klein] pipeline: the built-in model of the demo, bench and tests.

No real weights can be downloaded where the tests run, yet the code under test
loads diffusers folders, reads BFL single-file checkpoints and calls
`Flux2KleinPipeline`. So we write a pipeline with the same classes, the same
folder layout and the same tensor key layout as the real klein, only with
dimensions a few dozen wide and random (seeded) weights. It builds in about a
second and generates a 64x64 image on CPU in well under a second.

Every linear layer's in and out features are multiples of 32 (hidden 32, MLP
96, text features 96, latent channels 32), so int8 matmul kernels with
alignment rules accept the tiny shapes just as they accept the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import Qwen3Config, Qwen3ForCausalLM

from ..formats.write import write_bfl_checkpoint
from ..variants import KLEIN_SCHEDULER_CONFIG

# Bump when anything below changes what gets written, so cached copies are rebuilt.
TINY_VERSION = 2

TINY_BASE = "tiny"  # the name `--base` takes
MARKER_FILE = "tiny.json"
BFL_CHECKPOINT_FILE = "transformer-bf16.safetensors"

# klein feeds the transformer Qwen3 hidden states of these layers, concatenated.
TEXT_ENCODER_OUT_LAYERS = (9, 18, 27)

TINY_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 32,
    "intermediate_size": 96,
    # Layer 27 must be an intermediate layer (not the final-normed output), as in the real 36-layer Qwen3.
    "num_hidden_layers": 28,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,  # grouped-query attention, like Qwen3-4B
    "head_dim": 16,
    "max_position_embeddings": 1024,  # the pipeline pads prompts to 512 tokens
    "tie_word_embeddings": True,
    "bos_token_id": 0,  # <|endoftext|>, the tokenizer's first special token
    "eos_token_id": 2,  # <|im_end|>
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    # Four levels, as in the real VAE, so the spatial factor stays 8 (16 with the 2x2 patchify).
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (8, 16, 16, 16),
    "layers_per_block": 1,
    "latent_channels": 8,
    "norm_num_groups": 8,
    "sample_size": 64,
}

TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 4 * TINY_VAE_CONFIG["latent_channels"],  # latents are patchified 2x2 before the transformer
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": len(TEXT_ENCODER_OUT_LAYERS) * TINY_TEXT_ENCODER_CONFIG["hidden_size"],
    "timestep_guidance_channels": 32,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (4, 4, 4, 4),  # must sum to attention_head_dim
    "guidance_embeds": False,  # klein has no guidance embedder
}

# Qwen's pre-tokenizer split, so the tiny tokenizer cuts text the way the real one does.
_QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_THINK_TOKENS = ("<think>", "</think>")  # plain added tokens in Qwen3, not special ones

# Qwen3's chat format, reduced to what the pipeline uses: user turns, the generation
# prompt, and the empty think block that `enable_thinking=False` asks for.
_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# Text to learn BPE merges from: image prompts, so test prompts split into several-byte tokens.
_TOKENIZER_CORPUS = """
A red cube on a blue table. A photo of a cat sitting on a green sofa next to a window.
The quick brown fox jumps over the lazy dog. A portrait of a woman with long dark hair,
soft studio lighting, shallow depth of field. A watercolor painting of a mountain lake
at sunrise, mist over the water, pine trees along the shore. A city street at night in
the rain, neon signs reflected in puddles, people with umbrellas. A bowl of fresh fruit:
apples, oranges, bananas and grapes on a wooden kitchen counter. An astronaut riding a
horse on the moon, earth in the sky. A small robot reading a book in a library, warm
light from a lamp. Replace the background with a sunny beach. Make the car yellow and
add a dog in the back seat. Combine the person from the first image with the dress from
the second image. A close up of a flower with drops of dew on its petals, macro photo.
An old lighthouse on a rocky cliff during a storm, waves crashing, dramatic clouds.
A minimalist logo of a bird, flat design, white background, vector art, high contrast.
A cozy living room with a fireplace, a christmas tree and presents, snow outside.
system user assistant
""".split()


def make_tiny_pipeline(directory: str | Path, seed: int = 0, distilled: bool = True) -> Path:
    """Write a complete random-weight klein pipeline folder and return its path.

    The folder loads with `Flux2KleinPipeline.from_pretrained` offline. Weights are
    float32 (so tests can compare at full precision) and depend only on `seed`.
    Next to the diffusers layout, `transformer-bf16.safetensors` holds the same
    transformer as an official BFL single-file BF16 checkpoint. A folder already
    holding a complete pipeline for the same arguments is returned as is; the
    marker file is written last, so a half-written folder is rebuilt.
    """
    directory = Path(directory)
    marker = _marker(seed, distilled)
    if _read_marker(directory) == marker:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER_FILE).unlink(missing_ok=True)

    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
        torch.manual_seed(seed)
        transformer = build_tiny_transformer()
        text_encoder = _build_text_encoder()
        vae = _build_vae()
    transformer.save_pretrained(directory / "transformer")
    text_encoder.save_pretrained(directory / "text_encoder")
    _write_tokenizer(directory / "tokenizer")
    vae.save_pretrained(directory / "vae")
    FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER_CONFIG).save_pretrained(directory / "scheduler")
    _write_json(directory / "model_index.json", _model_index(distilled))
    write_bf16_checkpoint(transformer, directory / BFL_CHECKPOINT_FILE)
    _write_json(directory / MARKER_FILE, marker)
    return directory


def tiny_pipeline_cache(seed: int = 0, distilled: bool = True) -> Path:
    """The tiny pipeline in a shared cache folder, built on first use.

    Tests and the demo call this instead of `make_tiny_pipeline` so the pipeline
    is written once per machine, not once per test. The cache root is
    `$FLUX2_INT8_CACHE`, else `~/.cache/flux2_int8`. The folder is built under a
    temporary name and renamed into place, so parallel test workers never see
    a half-written one.
    """
    root = Path(os.environ.get("FLUX2_INT8_CACHE") or Path.home() / ".cache" / "flux2_int8")
    target = root / f"tiny-v{TINY_VERSION}-seed{seed}-{'distilled' if distilled else 'base'}"
    if _read_marker(target) == _marker(seed, distilled):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        make_tiny_pipeline(staging, seed=seed, distilled=distilled)
        _move_into_place(staging, target, _marker(seed, distilled))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_transformer() -> Flux2Transformer2DModel:
    """The tiny transformer with diffusers' default init, from the current torch seed.

    PyTorch's default init is enough: it zeroes no layer (the final projection and
    the modulations included), so outputs are finite and vary with prompt and image.
    """
    return Flux2Transformer2DModel(**TINY_TRANSFORMER_CONFIG).eval()


def write_bf16_checkpoint(transformer: Flux2Transformer2DModel, path: str | Path) -> Path:
    """Write `transformer` as a BFL single-file BF16 checkpoint (official key names, fused q/k/v)."""
    state = {key: tensor.to(torch.bfloat16) for key, tensor in transformer.state_dict().items()}
    return write_bfl_checkpoint(path, state, {"format": "bfl-bf16", "source": "flux2_int8.tiny.make_tiny_pipeline"})


def _move_into_place(staging: Path, target: Path, marker: dict[str, Any]) -> None:
    """Rename a freshly built folder to `target`, unless another process got there first."""
    if _read_marker(target) == marker:
        return
    shutil.rmtree(target, ignore_errors=True)  # incomplete (no matching marker), so nobody is using it
    try:
        os.replace(staging, target)
    except OSError:
        # A parallel worker renamed its copy into place in between; theirs is as good as ours.
        if _read_marker(target) != marker:
            raise


def _build_text_encoder() -> Qwen3ForCausalLM:
    return Qwen3ForCausalLM(Qwen3Config(**TINY_TEXT_ENCODER_CONFIG)).eval()


def _build_vae() -> AutoencoderKLFlux2:
    """The tiny VAE, with non-trivial latent batch-norm statistics.

    The pipeline normalises patchified latents with `vae.bn`'s running mean and
    variance; fresh ones are 0 and 1, which would hide a missing (de)normalisation.
    """
    vae = AutoencoderKLFlux2(**TINY_VAE_CONFIG).eval()
    features = vae.bn.num_features
    vae.bn.running_mean.copy_(0.1 * torch.randn(features))
    vae.bn.running_var.copy_(torch.empty(features).uniform_(0.5, 2.0))
    return vae


def _write_tokenizer(folder: Path) -> None:
    """Write a Qwen2-style byte-level BPE tokenizer, trained here on a short corpus.

    It has Qwen's pre-tokenizer, special tokens and (reduced) chat template, but a
    vocabulary of a few hundred entries, so the text encoder's embedding stays tiny.
    """
    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=TINY_TEXT_ENCODER_CONFIG["vocab_size"] - len(_THINK_TOKENS),
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS, trainer)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in _THINK_TOKENS])

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "model_max_length": 131072,
            "clean_up_tokenization_spaces": False,
            "split_special_tokens": False,
            "chat_template": _CHAT_TEMPLATE,
        },
    )


def _model_index(distilled: bool) -> dict[str, Any]:
    """model_index.json as the real klein repositories have it."""
    return {
        "_class_name": "Flux2KleinPipeline",
        "_diffusers_version": diffusers.__version__,
        "is_distilled": distilled,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen3ForCausalLM"],
        "tokenizer": ["transformers", "Qwen2TokenizerFast"],
        "transformer": ["diffusers", "Flux2Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"],
    }


def _marker(seed: int, distilled: bool) -> dict[str, Any]:
    return {"version": TINY_VERSION, "seed": seed, "distilled": distilled}


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
