"""The demo: the whole job on nano, the small trained klein shipped with the package, without weights or GPU.

It quantizes nano's transformer to INT8 W8A8 with `flux2_int8.quantize`
(calibrated over real pipeline calls on nano's training prompts), then draws
prompts of nano's grammar in BF16 and in INT8 with the same seeds, and writes
the PNGs, `results.json` and an `index.html` that shows them side by side: what
each precision drew, what the scorer (`nano.score`) read in it, how closely INT8
reproduces BF16 (PSNR) and what each took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from diffusers import Flux2KleinPipeline
from diffusers.utils import logging as diffusers_logging
from PIL import Image, ImageDraw
from transformers.utils import logging as transformers_logging

from ..generate import Sampling, check_sampling, check_writable, generate_image, load_pipeline, png_metadata, write_png
from ..outputs import mark_folder, write_text_atomic
from ..limits import THREADS, check_side
from ..threads import SMALL_HIDDEN_SIZE, fitted_threads
from ..nano import NANO_BASE, nano_folder
from ..nano.grammar import parse_prompt, split_scenes
from ..nano.score import read_image, score_reading
from ..quantization.api import quantize
from .page import difference_image, write_index
from .results import DemoResult, Task, TaskResult

CHECKPOINT_FILE = "nano-int8.safetensors"
TRANSFORMER_FILE = "transformer/diffusion_pytorch_model.safetensors"  # nano's BF16 transformer, in its folder


# Prompts nano never saw in training first, then one it did.
TASKS = (
    Task("held-out-1", "two yellow squares on a blue background", (), seed=0),
    Task("held-out-2", "three red circles on a black background", (), seed=1),
    Task("held-out-3", "a white triangle on a red background", (), seed=2),
    Task("trained-1", "one blue square on a yellow background", (), seed=3),
)
# Calibration draws this many of nano's training prompts: enough for its ranges, seconds on CPU.
CALIBRATION_SAMPLES = 8


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB between two 8-bit RGB images of one size (inf when identical): the eval tool's metric."""
    from ..evaluate.metrics import image_tensor
    from ..evaluate.metrics import psnr as tensor_psnr

    return tensor_psnr(image_tensor(a), image_tensor(b))


def run_demo(
    out: str | Path,
    steps: int = 4,
    size: int = 128,
    device: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] = lambda message: None,
    threads: int | None = None,
    dtype: str = "bfloat16",
) -> DemoResult:
    """Run the demo into folder `out` and return what it measured (also in `out/results.json`).

    `progress` gets one line per stage and per task as the demo goes (the CLI prints them).
    `dtype` ("bfloat16", "float16", "float32") is the compute dtype of both pipelines and the calibration.

    It runs on one CPU thread unless `threads` (or OMP_NUM_THREADS) says otherwise: nano's
    operations are too small to share, and with other work on the machine two spinning
    threads made it ten times slower (`flux2_int8.threads`).
    """
    out = Path(out)
    check_sampling(Sampling(steps=steps, width=size, height=size))
    check_side(size, "size", "nano")  # nano's own limit, smaller than klein's
    if threads is not None:
        THREADS.check(threads, "threads")
    check_writable(out, overwrite=overwrite)
    with fitted_threads(SMALL_HIDDEN_SIZE, threads):
        return _run(out, steps, size, device, progress, getattr(torch, dtype))


def _run(out: Path, steps: int, size: int, device: str | None, progress: Callable[[str], None], dtype: torch.dtype) -> DemoResult:
    started = time.perf_counter()
    mark_folder(out)
    progress("[1/4] the nano pipeline (shipped with the package)")
    folder = nano_folder()
    progress("[2/4] quantizing its transformer to INT8 W8A8 (calibrating on a few prompts)")
    with _no_loading_bars():
        quantize_started = time.perf_counter()
        checkpoint = quantize_nano(out / CHECKPOINT_FILE, size, device, dtype=dtype)
        quantize_seconds = time.perf_counter() - quantize_started
        bf16 = _quiet(load_pipeline(NANO_BASE, device=device, dtype=dtype))
        int8 = _quiet(load_pipeline(NANO_BASE, transformer=checkpoint, device=device, dtype=dtype))

    pipelines = {"bf16": (bf16, "the base's transformer"), "int8": (int8, CHECKPOINT_FILE)}
    for pipeline, _ in pipelines.values():  # first calls pay one-off costs; keep them out of the timings
        generate_image(pipeline, "warm-up", [], 0, 1, 1.0, 64, 64)
    progress(f"[3/4] {len(TASKS)} tasks in BF16 and INT8, same seeds")
    results = []
    for index, task in enumerate(TASKS, 1):
        results.append(_run_task(task, pipelines, out, steps, size))
        done = results[-1]
        progress(f"  {index}/{len(TASKS)} {task.name}: BF16 {done.bf16_seconds:.2f} s, INT8 {done.int8_seconds:.2f} s, PSNR {done.psnr_db:.1f} dB")
    progress("[4/4] writing index.html")

    result = DemoResult(
        out=out,
        index=out / "index.html",
        tasks=results,
        steps=steps,
        size=size,
        device=str(bf16.device),
        quantize_seconds=quantize_seconds,
        total_seconds=time.perf_counter() - started,
        bf16_checkpoint_bytes=(folder / TRANSFORMER_FILE).stat().st_size,
        int8_checkpoint_bytes=checkpoint.stat().st_size,
    )
    write_index(result)
    write_text_atomic(out / "results.json", json.dumps(asdict(result), indent=2, default=str) + "\n")
    return result


def quantize_nano(path: Path, size: int, device: str | None, samples: int = CALIBRATION_SAMPLES, dtype: torch.dtype | None = None) -> Path:
    """nano's transformer as INT8 W8A8 through `flux2_int8.quantize`, on a few of its training prompts."""
    return quantize(NANO_BASE, path, samples=samples, resolution=size, device=device, progress=False, dtype=dtype or torch.bfloat16).path


def _run_task(task: Task, pipelines: dict, out: Path, steps: int, size: int) -> TaskResult:
    images, seconds, files = {}, {}, {}
    for precision, (pipeline, checkpoint) in pipelines.items():
        start = time.perf_counter()
        images[precision] = generate_image(pipeline, task.prompt, [], task.seed, steps, 1.0, size, size)
        seconds[precision] = time.perf_counter() - start
        files[precision] = f"{task.name}-{precision}.png"
        metadata = png_metadata(task.prompt, task.seed, steps, 1.0, images[precision].size, "nano klein (demo)", checkpoint, ())
        write_png(out / files[precision], images[precision], metadata)
    diff_file = f"{task.name}-diff.png"
    write_png(out / diff_file, difference_image(images["bf16"], images["int8"]), {"description": "|INT8 - BF16| amplified"})
    _, held_out = split_scenes()
    return TaskResult(
        task, files["bf16"], files["int8"], diff_file, seconds["bf16"], seconds["int8"], psnr(images["bf16"], images["int8"]),
        held_out=parse_prompt(task.prompt) in held_out, read_bf16=describe_reading(images["bf16"], task.prompt), read_int8=describe_reading(images["int8"], task.prompt),
    )


def describe_reading(image: Image.Image, prompt: str | None = None) -> str:
    """What the scorer read in the picture, in the grammar's words, against what `prompt` asks.

    `2 yellow squares on blue (as asked)` when every part matches; otherwise what was read and
    which parts differ (`read: 1 yellow circle on blue; not as asked: count, shape`), so a
    caption never names a shape the picture was not read as, nor claims a match it lacks.
    """
    reading = read_image(np.asarray(image.convert("RGB")))
    if reading.colour is None:
        seen = f"nothing on {reading.background}"
    else:
        seen = f"{reading.count} {reading.colour} {reading.shape}{'' if reading.count == 1 else 's'} on {reading.background}"
    scene = parse_prompt(prompt) if prompt is not None else None
    if scene is None:
        return seen
    missed = [part for part, met in score_reading(scene, reading).items() if not met]
    return f"{seen} (as asked)" if not missed else f"read: {seen}; not as asked: {', '.join(missed)}"


def draw_references(size: int) -> tuple[Image.Image, Image.Image]:
    """Two simple drawn pictures (a red square on blue, a green circle on orange) to edit and compose."""
    first = Image.new("RGB", (size, size), (40, 70, 160))
    ImageDraw.Draw(first).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(200, 30, 30))
    second = Image.new("RGB", (size, size), (240, 150, 40))
    ImageDraw.Draw(second).ellipse((size // 5, size // 5, 4 * size // 5, 4 * size // 5), fill=(30, 160, 60))
    return first, second


@contextmanager
def _no_loading_bars() -> Iterator[None]:
    """Hide diffusers' and transformers' loading and saving bars: nano loads in a blink."""
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def _quiet(pipeline: Flux2KleinPipeline) -> Flux2KleinPipeline:
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


