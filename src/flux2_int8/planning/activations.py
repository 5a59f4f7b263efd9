"""Activation peaks per resolution and batch, from the configs: an estimate, stated as one.

Each figure is the largest set of tensors alive at once inside one block, counted from
the shapes the code makes (the transformer's single-stream block, which carries image and
text tokens and the widest projection; one Qwen3 decoder layer with the hidden states
the pipeline keeps; the VAE decoder's last up block at full resolution). It assumes
PyTorch's fused attention (flash / memory-efficient SDPA on CUDA: no tokens x tokens
matrix) and text-to-image (reference images add their tokens). INT8 layers add their
int8 input copy and int32 accumulator. The GPU proof run measures the real peaks
(`scripts/bench_gpu.sh proof`, section `offload`) to hold these against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INT32_BYTES = 4
VAE_SCALE = 8  # the VAE downsamples 8x; klein then patchifies 2x2
PATCH = 2


@dataclass(frozen=True)
class Workload:
    """What one pipeline call computes: image side in pixels, images per call, prompt tokens."""

    height: int
    width: int
    batch: int = 1
    text_tokens: int = 512

    @property
    def image_tokens(self) -> int:
        return (self.height // (VAE_SCALE * PATCH)) * (self.width // (VAE_SCALE * PATCH))


def transformer_peak(config: dict[str, Any], work: Workload, element: int, int8: bool) -> int:
    """Bytes alive at the peak of one single-stream block (plus the residual streams outside it)."""
    hidden = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    mlp = int(hidden * float(config.get("mlp_ratio", 3.0)))
    tokens = work.batch * (work.image_tokens + work.text_tokens)
    fused = 3 * hidden + 2 * mlp  # linear1: q, k, v and the gated MLP's two halves
    outside = 2 * tokens * hidden * element  # the block's input and the pipeline's residual copy
    projection = tokens * fused * element + (tokens * hidden + tokens * fused * INT32_BYTES if int8 else 0)
    attention = tokens * fused * element + 2 * tokens * 3 * hidden * element + tokens * hidden * element
    output = tokens * (hidden + mlp) * element * 2 + (tokens * (hidden + mlp) + tokens * hidden * INT32_BYTES if int8 else 0)
    return outside + max(projection, attention, output)


def text_encoder_peak(config: dict[str, Any], depth: int, work: Workload, element: int, int8: bool) -> int:
    """Bytes alive in one Qwen3 layer's MLP, with every hidden state the pipeline's call keeps."""
    hidden, intermediate = int(config["hidden_size"]), int(config["intermediate_size"])
    tokens = work.batch * work.text_tokens
    kept = (depth + 1) * tokens * hidden * element  # output_hidden_states=True keeps them all
    mlp = 3 * tokens * intermediate * element + (tokens * hidden + tokens * intermediate * INT32_BYTES if int8 else 0)
    mask = work.batch * work.text_tokens * work.text_tokens * element
    return kept + mlp + mask


def vae_decode_peak(config: dict[str, Any], work: Workload, element: int) -> int:
    """Bytes alive in the decoder's last up block at full resolution (input upsampled, norm, conv out, shortcut)."""
    channels = list(config.get("block_out_channels", (128, 256, 512, 512)))
    pixels = work.batch * work.height * work.width
    wide = channels[1] if len(channels) > 1 else channels[0]
    return pixels * element * (3 * wide + 2 * channels[0])
