"""Options shared by the commands, spelled once so every command means the same by them.

Plain strings and argparse only: `--help` must import no torch (a test checks the
spellings against the library's own tuples, and that every command that loads a model
has the shared options).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from .. import limits
from ..errors import ConfigError, Flux2Int8Error

ACTIVATIONS = ("auto", "static", "dynamic")
ACTIVATIONS_HELP = (
    "how INT8 layers quantize activations: auto (the file's calibrated scales, else per token), "
    "static (the file's input_scale), or dynamic (per token at run time) (default auto)"
)
DTYPES = ("bfloat16", "float16", "float32")
BUILT_IN_BASES = ("tiny", "nano", "nano-outliers")
BASE_HELP = (
    "variant (klein-4b, klein-9b, klein-base-4b, klein-base-9b), hub repository id, local pipeline folder, "
    "or a built-in model: tiny (random weights, for tests), nano (small, trained) or nano-outliers (nano with planted activation outliers)"
)
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class DeprecatedAlias(argparse.Action):
    """An old spelling that still works for one release, with one line on stderr saying the new one."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        print(f"deprecated: {option_string} is now {self.new}; the old spelling goes away in the next release", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def device_choice(value: str) -> str:
    """auto, cpu, cuda or cuda:N (argparse type)."""
    if not _DEVICE.match(value.strip().lower()):
        raise argparse.ArgumentTypeError(f"'{value}' is not a device: expected auto, cpu, cuda or cuda:N")
    return value.strip().lower()


def in_range(limit: limits.IntRange | limits.FloatRange) -> Callable[[str], Any]:
    """An argparse type for a number in `limit` (`flux2_int8.limits`); the message gives the range.

    Every numeric option of every command uses one of these, so `--threads 0`, `--steps
    100000`, `--time-budget nan` or `--cpus-per-worker 1e-5` are one usage line, not a
    traceback, a hang or a silent NaN later.
    """

    def parse(text: str) -> Any:
        try:
            return limit.parse(text, "")
        except limits.RangeError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {limit.describe()}") from None

    parse.__name__ = "number"
    return parse


def gpus_per_worker(text: str) -> float:
    """--gpus-per-worker: 0 (CPU workers), or a finite fraction of at least 0.01 up to 64."""
    value = in_range(limits.GPUS_PER_WORKER)(text)
    try:
        return limits.check_gpus_per_worker(value, "")  # type: ignore[return-value]
    except limits.RangeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 0 or a finite number from {limits.MIN_GPU_FRACTION:g} to {limits.GPUS_PER_WORKER.high:g}") from None


def image_side(text: str) -> int:
    """--width / --height / --resolution: a multiple of 16 from 64 to 2048 (the base's own limit is checked in `resolve_size`)."""
    value = in_range(limits.SIDE)(text)
    if value % limits.SIDE_MULTIPLE:
        raise argparse.ArgumentTypeError(f"{text!r} is not {limits.SIDE.describe()}")
    return value


def lora_spec(text: str) -> str:
    """--lora PATH_OR_REPO[:SCALE], its scale checked now (finite, in range), kept as written."""
    from ..lora.spec import parse_lora_spec

    try:
        parse_lora_spec(text)
    except Flux2Int8Error as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"--lora {text}: ")) from None
    return text


THREADS = in_range(limits.THREADS)
SEED = in_range(limits.SEED)
STEPS = in_range(limits.STEPS)
GUIDANCE = in_range(limits.GUIDANCE)
NUM_IMAGES = in_range(limits.NUM_IMAGES)


def device_or_default(value: str | None) -> str | None:
    """`auto` (or nothing) -> None: the library then takes CUDA when available, else the CPU."""
    return None if value in (None, "auto") else value


def add_base(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--base", required=required, help=BASE_HELP)


def add_size(parser: argparse.ArgumentParser, default: str) -> None:
    """--width, --height, and --resolution N for a square N x N."""
    side = image_side
    sides = f"a multiple of 16 from 64 to {limits.MAX_SIDE} ({limits.MAX_BUILT_IN_SIDE['nano']} for nano, {limits.MAX_BUILT_IN_SIDE['tiny']} for tiny)"
    parser.add_argument("--width", type=side, help=f"image width in px, {sides} (default {default})")
    parser.add_argument("--height", type=side, help=f"image height in px, {sides} (default {default})")
    parser.add_argument("--resolution", type=side, metavar="N", help="shorthand for --width N --height N")


def resolve_size(args: argparse.Namespace, base: str | None = None) -> tuple[int | None, int | None]:
    """(width, height) from --width/--height/--resolution, within what `base` supports; a contradiction is a usage error.

    `base` defaults to the command's --base; the built-in tiny and nano allow smaller
    sides than klein (`flux2_int8.limits.max_side`).
    """
    width, height, side = args.width, args.height, args.resolution
    if side is not None:
        for name, value in (("--width", width), ("--height", height)):
            if value is not None and value != side:
                raise ConfigError(f"--resolution {side} contradicts {name} {value}")
        width = height = side
    base = base if base is not None else getattr(args, "base", None)
    name = "--resolution" if side is not None else None
    limits.check_side(width, name or "--width", base)
    limits.check_side(height, name or "--height", base)
    return width, height


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_choice, default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default auto)")


def add_dtype(parser: argparse.ArgumentParser, what: str = "compute dtype of activations and float layers") -> None:
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help=f"{what} (default bfloat16)")


def add_activations(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--activations", choices=ACTIVATIONS, default="auto", help=ACTIVATIONS_HELP)


def add_run_flags(parser: argparse.ArgumentParser, local_files: bool = True, threads: bool = True) -> None:
    """--quiet and --json on every command; --local-files-only and --threads where models load."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary (JSON) on stdout instead of text")
    if local_files:
        parser.add_argument("--local-files-only", action="store_true", help="use the Hugging Face cache only, never the network")
    if threads:
        parser.add_argument("--threads", type=THREADS, metavar="N", help="CPU intra-op threads (default: 1 for the small built-in models, else PyTorch's; OMP_NUM_THREADS is honoured)")



def thread_count(args: argparse.Namespace, base: str | None) -> int | None:
    """The intra-op thread count a command should run with (None: PyTorch's own).

    --threads wins, then OMP_NUM_THREADS; otherwise one thread for the small built-in
    models, whose operations are too small to split (see `flux2_int8.threads`).
    """
    from ..threads import SMALL_HIDDEN_SIZE, fitted_thread_count

    small = base is not None and str(base).strip().lower() in BUILT_IN_BASES
    return fitted_thread_count(SMALL_HIDDEN_SIZE if small else 0, getattr(args, "threads", None))


def apply_threads(args: argparse.Namespace, base: str | None) -> None:
    """Set the command's thread count for the rest of the process (a CLI run is one command)."""
    count = thread_count(args, base)
    if count is not None:
        import torch

        torch.set_num_threads(count)


def silence_loading_bars() -> None:
    """--quiet: no loading bars from diffusers, transformers or huggingface_hub either (process-wide: a CLI run is one command)."""
    import diffusers
    import huggingface_hub
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def print_json(document: Any) -> None:
    """The --json summary: one JSON document on stdout."""
    import json

    print(json.dumps(document, indent=2, default=str))
