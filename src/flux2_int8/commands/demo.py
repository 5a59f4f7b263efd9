"""`flux2-int8 demo [--out DIR]`: the whole job on nano (the small trained klein shipped with the package), BF16 vs INT8, as a web page."""

from __future__ import annotations

import argparse

from ..outputs import add_overwrite_flag


def run(args: argparse.Namespace) -> None:
    import sys

    from ..demo import run_demo

    result = run_demo(args.out, steps=args.steps, size=args.size, device=args.device, overwrite=args.overwrite, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{'task':<11} {'BF16 s':>7} {'INT8 s':>7} {'PSNR dB':>8}  prompt -> BF16 read | INT8 read")
    for task in result.tasks:
        print(
            f"{task.task.name:<11} {task.bf16_seconds:>7.2f} {task.int8_seconds:>7.2f} {task.psnr_db:>8.1f}  "
            f"{task.task.prompt} -> {task.read_bf16} | {task.read_int8}"
        )
    if result.device.startswith("cpu"):
        print("(CPU timings: not indicative of GPU speed; see the note on the page)")
    print(f"INT8 transformer: {result.int8_checkpoint_bytes / 1024:.0f} KiB (BF16 {result.bf16_checkpoint_bytes / 1024:.0f} KiB)")
    print(f"done in {result.total_seconds:.1f} s; open {result.index}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="quantize nano (the small trained klein shipped with flux2-int8) and compare BF16 with INT8 on its prompts (no weights, no GPU needed)")
    parser.add_argument("--out", default="flux2-int8-demo", help="folder for the PNGs and index.html (default: flux2-int8-demo)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (default 4, as the distilled klein)")
    parser.add_argument("--size", type=int, default=128, help="image side in px, a multiple of 16 >= 64 (default 128)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
