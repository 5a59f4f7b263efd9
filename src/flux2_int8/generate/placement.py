"""Where a loaded pipeline's weights live: all on one device, or offloaded with diffusers' hooks.

`model` and `sequential` are diffusers' model and leaf CPU offload; `group` is diffusers'
group offload at block level with CUDA streams (the next block is copied while the
current one runs), which moves far fewer, larger pieces than `sequential`. `auto` reads
the memory plan (`planning.plan_memory`, headers only) against the GPU's free memory
and takes the fastest placement that fits, saying which and why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import Flux2KleinPipeline

from ..errors import ConfigError
from ..planning import MemoryPlan, plan_memory

logger = logging.getLogger("flux2_int8")

OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "group", "sequential", "auto")
_DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def place(pipeline: Flux2KleinPipeline, device: torch.device, offload: str) -> None:
    """Apply a concrete placement (not `auto`: `choose_offload` first)."""
    if offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        enable_group_offload(pipeline, device)
    elif offload == "none":
        pipeline.to(device)
    else:
        raise ConfigError(f"unknown offload mode '{offload}': expected one of {', '.join(OFFLOAD_MODES)}")


def enable_group_offload(pipeline: Flux2KleinPipeline, device: torch.device) -> None:
    """diffusers' group offload: one repeated block per group, prefetched on a CUDA stream where there is one.

    `Int8Linear` needs nothing special: the hooks move its int8 weight and float32 scale
    buffers as they are (`.data` is moved, the dtype kept), and a LoRA layer is one more
    submodule of its block.
    """
    streams = device.type == "cuda"
    pipeline.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1, use_stream=streams, record_stream=streams)


def gpu_free_memory(device: torch.device) -> int:
    """Free bytes on the CUDA device now (what other processes hold is not ours to use)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def choose_offload(
    folder: Path,
    transformer: Path | None,
    text_encoder: str | Path,
    dtype: torch.dtype,
    device: torch.device,
    gpu_memory: str | int | None = None,
    resolution: int = 1024,
    batch: int = 1,
    max_sequence_length: int = 512,
) -> tuple[str, MemoryPlan | None, str]:
    """The placement `offload="auto"` takes: (mode, plan, why). `gpu_memory` overrides the device's free memory."""
    if gpu_memory is None and device.type != "cuda":
        return "none", None, f"device is {device.type}: there is no GPU memory to plan, everything stays on it"
    memory = gpu_memory if gpu_memory is not None else gpu_free_memory(device)
    plan = plan_memory(folder, transformer, text_encoder, resolution, batch, memory, _DTYPE_NAMES.get(dtype, "bfloat16"), max_sequence_length)
    if plan.choice is None:
        return "sequential", plan, plan.reason + "; trying 'sequential' anyway"
    return plan.choice, plan, plan.reason
