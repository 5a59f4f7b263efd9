"""`flux2-int8 demo [--out DIR]`: the whole job on nano (the small trained klein shipped with the package), BF16 vs INT8, as a web page."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..outputs import add_overwrite_flag
from ..errors import ConfigError
from .options import STEPS, DeprecatedAlias, image_side, add_device, add_dtype, silence_loading_bars, add_run_flags, add_size, device_or_default, print_json, resolve_size


def run(args: argparse.Namespace) -> None:
    import sys

    from ..generate.output import check_writable
    from ..generate.requests import Sampling, check_sampling

    width, height = resolve_size(args, "nano")
    if width != height:
        raise ConfigError(f"--width {width} --height {height}: the demo draws square images; give one size (--resolution N)")
    check_sampling(Sampling(steps=args.steps, width=width or 128, height=width or 128))  # before torch is imported
    check_writable(args.out, overwrite=args.overwrite)
    from ..demo import run_demo

    if args.quiet or args.json:
        silence_loading_bars()
    quiet = args.quiet or args.json
    progress = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_demo(args.out, steps=args.steps, size=width or 128, device=device_or_default(args.device), overwrite=args.overwrite, progress=progress, threads=args.threads, dtype=args.dtype)
    if args.json:
        print_json(asdict(result))
        return
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
    parser.add_argument("--steps", type=STEPS, default=4, help="denoising steps (default 4, as the distilled klein)")
    add_size(parser, "128, nano's native size; square: width and height must agree")
    parser.add_argument("--size", type=image_side, dest="resolution", action=DeprecatedAlias, new="--resolution")
    add_device(parser)
    add_dtype(parser)
    add_run_flags(parser, local_files=False)
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
