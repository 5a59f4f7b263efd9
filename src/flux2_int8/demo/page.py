"""The demo's `index.html`: one self-contained page, BF16 and INT8 side by side per task.

No scripts, no external assets: it opens from disk in any browser and renders in a
headless one for a screenshot. Every text from outside (prompts, paths) is escaped.
"""

from __future__ import annotations

import math
import platform
from html import escape
import numpy as np
import torch
from PIL import Image

from ..outputs import write_text_atomic
from ..version import __version__
from .results import DemoResult, TaskResult

# |INT8 - BF16| is a few levels out of 255; amplified so the eye can see where they differ.
DIFF_GAIN = 16

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
p.lead { color: #555; max-width: 60em; margin: 0 0 16px; }
table { border-collapse: collapse; background: white; }
th, td { border: 1px solid #ddd; padding: 8px 10px; vertical-align: top; text-align: left; }
th { background: #f0f0f3; font-weight: 600; }
figure { margin: 0; display: inline-block; text-align: center; }
figure + figure { margin-left: 6px; }
img { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #ccc; display: block; }
img.ref { width: 96px; height: 96px; }
figcaption { font-size: 12px; color: #555; margin-top: 2px; }
.prompt { font-style: italic; max-width: 16em; }
td.refs { white-space: nowrap; }
.psnr { font-size: 20px; font-weight: 600; }
footer { margin-top: 16px; color: #666; font-size: 13px; }
p.cpu { background: #fff3c4; padding: 6px 10px; max-width: 60em; border-radius: 3px; }
"""
# Why the demo's CPU timings say nothing of a GPU's: one line on the page under the table.
CPU_TIMINGS_NOTE = (
    "Timings on a CPU are not indicative of GPU speed. INT8 can be slower than BF16 here: each INT8 layer also quantizes "
    "its input and rescales its output, and the tiny model's matrix products are too small for the integer GEMM to win that back; "
    "the speed-up comes from INT8 tensor cores on full-size GEMMs on a GPU (see docs/benchmarks.md)."
)


def difference_image(a: Image.Image, b: Image.Image) -> Image.Image:
    """|a - b| per channel times DIFF_GAIN, clipped to 255 (black: identical)."""
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    return Image.fromarray(np.clip(np.abs(x - y) * DIFF_GAIN, 0, 255).astype(np.uint8))


def write_index(result: DemoResult) -> None:
    """Write `index.html` into the demo folder."""
    write_text_atomic(result.index, render_index(result))


def render_index(result: DemoResult) -> str:
    rows = "\n".join(_row(task) for task in result.tasks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>flux2-int8 demo: BF16 vs INT8</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>flux2-int8 demo: FLUX.2 [klein] in BF16 and INT8 W8A8</h1>
<p class="lead">klein-nano: the klein pipeline classes (same layout and code path as the real 4B/9B models) at a million
parameters, trained on CPU to draw one small grammar of prompts (<i>two red circles on a blue background</i>) and shipped with
flux2-int8. Its transformer is quantized to INT8 W8A8 by <code>flux2_int8.quantize</code> on a few of its training prompts; each
prompt runs with the same seed in both precisions. "held-out" prompts are ones nano never saw in training. Under each picture:
what the scorer (<code>flux2_int8.nano.score</code>) reads in it. PSNR says how closely INT8 reproduces BF16 (higher is closer;
published INT8 klein 9B: 22.3 dB against BF16 at 1024&sup2;).</p>
<table>
<tr><th>task</th><th>prompt</th><th>BF16</th><th>INT8</th><th>|INT8 &minus; BF16| &times; {DIFF_GAIN}</th><th>PSNR INT8 vs BF16</th></tr>
{rows}
</table>
{_cpu_note(result)}
<footer>
{result.steps} steps, {result.size}x{result.size} px, device {escape(result.device)}, {torch.get_num_threads()} CPU thread(s).
Transformer checkpoint: BF16 {result.bf16_checkpoint_bytes / 1024:.0f} KiB, INT8 {result.int8_checkpoint_bytes / 1024:.0f} KiB
(calibrated and written in {result.quantize_seconds:.2f} s). Whole demo: {result.total_seconds:.1f} s.
flux2-int8 {__version__}, torch {escape(torch.__version__)}, Python {platform.python_version()}.
</footer>
</body>
</html>
"""


def _cpu_note(result: DemoResult) -> str:
    return f'<p class="cpu">{escape(CPU_TIMINGS_NOTE)}</p>' if result.device.startswith("cpu") else ""


def _row(result: TaskResult) -> str:
    task = result.task
    seen = "held-out prompt" if result.held_out else "training prompt"
    return (
        f"<tr><td>{escape(task.name)}<br><small>seed {task.seed}, {seen}</small></td>"
        f'<td class="prompt">{escape(task.prompt)}</td>'
        f"<td>{_figure(result.bf16_file, f'{result.read_bf16}, {result.bf16_seconds:.2f} s')}</td>"
        f"<td>{_figure(result.int8_file, f'{result.read_int8}, {result.int8_seconds:.2f} s')}</td>"
        f"<td>{_figure(result.diff_file, 'difference')}</td>"
        f'<td class="psnr">{_db(result.psnr_db)}</td></tr>'
    )


def _figure(name: str, caption: str) -> str:
    return f'<figure><img src="{escape(name)}" alt="{escape(name)}"><figcaption>{escape(caption)}</figcaption></figure>'


def _db(value: float) -> str:
    return "identical" if math.isinf(value) else f"{value:.1f} dB"
