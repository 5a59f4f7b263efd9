"""Tiny random stand-ins for the metric networks (CLIP, LPIPS, Inception) and skip marks for the eval extra."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

SIZE = 64
STEPS = 2
HAS_LPIPS = all(importlib.util.find_spec(name) is not None for name in ("lpips", "torchvision"))
HAS_TORCHMETRICS = all(importlib.util.find_spec(name) is not None for name in ("torchmetrics", "torch_fidelity"))
needs_lpips = pytest.mark.skipif(not HAS_LPIPS, reason="needs the eval extra: lpips and torchvision (pip install 'flux2-int8[eval]')")
needs_torchmetrics = pytest.mark.skipif(not HAS_TORCHMETRICS, reason="needs the eval extra: torchmetrics and torch-fidelity (pip install 'flux2-int8[eval]')")
_WORDS = "a an the of on in with and red blue green yellow cube table cat sofa car garage make put".split()


def build_tiny_clip():
    """A random CLIPModel a few layers deep, a word-level tokenizer and a 32-px image processor."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    from flux2_int8.evaluate import ClipMetric

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{word: i + 3 for i, word in enumerate(_WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 2, "bos_token_id": 0, "pad_token_id": 0}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return ClipMetric(model, tokenizer, processor, "tiny random CLIP")


class TinyFeatures(nn.Module):
    """An Inception stand-in: uint8 [N, 3, H, W] -> float [N, 8] through pooling and a fixed random projection."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(12, self.num_features, generator=generator))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.float() / 255.0, 2).flatten(1)
        return pooled @ self.projection


def build_tiny_lpips():
    """lpips.LPIPS with its shipped linear heads over a random (never downloaded) AlexNet."""
    import warnings

    import lpips

    from flux2_int8.evaluate import LpipsMetric

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(0)
        network = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    return LpipsMetric(network, "LPIPS v0.1 over a random AlexNet")
