"""nano's architecture: the exact klein classes, a few hundred thousand parameters each.

`Flux2KleinPipeline` with a `Flux2Transformer2DModel` of width 64 (4 heads x 16,
2 double + 3 single blocks), an `AutoencoderKLFlux2` with channels 16/32/32/32 and
8 latent channels, and a frozen, randomly initialised tiny Qwen3 text encoder
whose tokenizer keeps every word of the grammar whole. Only the sizes differ from
the real klein, so everything flux2-int8 does to klein (load, quantize, generate,
evaluate) runs on nano unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast, Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM

from ..errors import ConfigError
from ..formats.header import loads_bounded
from ..tiny import pipeline as tiny
from ..variants import KLEIN_SCHEDULER_CONFIG
from . import NANO_MAX_SEQUENCE_LENGTH, NANO_SHAPE, NANO_SINGLE_LAYERS, NANO_SIZE, NANO_STEPS
from .grammar import all_scenes

__all__ = ["NANO_MAX_SEQUENCE_LENGTH", "NANO_SIZE", "NANO_STEPS"]

NANO_TEXT_ENCODER_CONFIG: dict[str, Any] = {**tiny.TINY_TEXT_ENCODER_CONFIG, "max_position_embeddings": 64}

NANO_VAE_CONFIG: dict[str, Any] = {
    **tiny.TINY_VAE_CONFIG,
    "block_out_channels": (16, 32, 32, 32),
    "sample_size": NANO_SIZE,
}

NANO_TRANSFORMER_CONFIG: dict[str, Any] = {
    **tiny.TINY_TRANSFORMER_CONFIG,
    **NANO_SHAPE,
    "num_single_layers": NANO_SINGLE_LAYERS,
    "timestep_guidance_channels": 64,
}
# Latents are patchified 2x2; the transformer reads three text-encoder layers concatenated.
assert NANO_SHAPE["in_channels"] == 4 * NANO_VAE_CONFIG["latent_channels"]
assert NANO_SHAPE["joint_attention_dim"] == len(tiny.TEXT_ENCODER_OUT_LAYERS) * NANO_TEXT_ENCODER_CONFIG["hidden_size"]


def build_text_encoder(seed: int) -> Qwen3ForCausalLM:
    """The frozen text encoder: random, but with unit-scale token embeddings.

    With Qwen's default 0.02 init two colour words' features are alike (cosine 0.77
    between "red" and "blue"); unit embeddings keep every grammar word apart in
    layers 9, 18 and 27 (cosine 0.24). The price: the random layers add little
    context, so a word reads nearly the same wherever it stands (cosine 0.9995), and
    the transformer tells the object colour from the background colour by the text
    position ids alone (measured with `tests/nano/test_grammar.py`'s tokenizer).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = Qwen3ForCausalLM(Qwen3Config(**NANO_TEXT_ENCODER_CONFIG)).eval()
        encoder.model.embed_tokens.weight.data.normal_(0.0, 1.0)
    encoder.requires_grad_(False)
    return _round_to_bf16(encoder)


def build_vae(seed: int) -> AutoencoderKLFlux2:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKLFlux2(**NANO_VAE_CONFIG)


def build_transformer(seed: int) -> Flux2Transformer2DModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Flux2Transformer2DModel(**NANO_TRANSFORMER_CONFIG)


def build_tokenizer() -> Qwen2TokenizerFast:
    """A Qwen2-style byte-level BPE trained on the grammar, so each of its words is one token."""
    raw = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(tiny._QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=NANO_TEXT_ENCODER_CONFIG["vocab_size"] - len(tiny._THINK_TOKENS),
        special_tokens=list(tiny._SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The chat template puts the prompt after "user\n", so train on that context.
    corpus = [f"user\n{scene.prompt}" for scene in all_scenes()] + ["system", "user", "assistant"]
    raw.train_from_iterator(corpus, trainer)
    raw.add_tokens([AddedToken(token, special=False, normalized=False) for token in tiny._THINK_TOKENS])
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=raw,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.chat_template = tiny._CHAT_TEMPLATE
    return tokenizer


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**KLEIN_SCHEDULER_CONFIG)


def assemble_pipeline(
    transformer: Flux2Transformer2DModel,
    vae: AutoencoderKLFlux2,
    text_encoder: Qwen3ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
) -> Flux2KleinPipeline:
    """The stock pipeline around nano's parts (distilled: no classifier-free guidance)."""
    return Flux2KleinPipeline(
        scheduler=build_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def save_pipeline(pipeline: Flux2KleinPipeline, folder: str | Path) -> Path:
    """Write the pipeline as a diffusers folder with bf16 safetensors weights."""
    folder = Path(folder)
    pipeline.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    return folder


def pipeline_entries(folder: Path) -> list[str]:
    """The entries of a pipeline folder `save_pipeline` wrote: `model_index.json` and each component's folder.

    What a copy of the pipeline takes (nothing else a user keeps there), and what marks a
    folder as one: a `--resume` or averaging input without it is refused by name.
    """
    index = folder / "model_index.json"
    if not folder.is_dir():
        raise ConfigError(f"{folder}: {'is a file' if folder.exists() else 'no such folder'}; expected a nano pipeline folder (as scripts/train_nano.py writes)")
    try:
        document = loads_bounded(index.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{folder}: not a pipeline folder (no model_index.json); expected one scripts/train_nano.py wrote") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{index}: cannot be read as JSON ({error})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{index}: must hold a JSON object")
    return [index.name, *sorted(name for name in document if not name.startswith("_") and (folder / name).is_dir())]


def _round_to_bf16(module: torch.nn.Module) -> torch.nn.Module:
    """Round float32 weights to bf16 values in place, so training sees what ships."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.bfloat16).float())
    return module
