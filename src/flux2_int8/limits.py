"""The ranges every number a user gives must lie in, spelled once for the CLI and the Python API.

A number outside these is a mistake, never a long run: `--steps 100000` made NaN
sigmas, `--resolution 100000` asked torch for terabytes, `--threads 0` was a traceback
and `--cpus-per-worker nan` a Ray error. The command line parses with `parse` (an
argparse type, in `commands/options.py`); the API checks with `check` where the
value enters (load, generate, quantize), so both refuse with the same words.
docs/reliability.md has the table.

Image sides: FLUX.2 [klein] is documented up to 4 megapixels, so 2048 x 2048 is the
largest side we allow. The built-in models are smaller: nano (trained at 128 px) is
capped at 512, four times its native side (beyond that it draws noise, and at 4096 px
a CPU run went on for minutes, deaf to Ctrl-C), and tiny (random weights, for
tests; it samples at klein's default 1024 unless told) at 1024.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import Flux2Int8Error

_INTEGER = re.compile(r"^[+-]?[0-9]{1,30}$")  # no `1_0` (Python's int() takes it), no 5,000-digit strings
_DECIMAL = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$")  # no `1_0`, no nan/inf


class RangeError(Flux2Int8Error, ValueError):
    """A number outside the range its option accepts (also a ValueError, as Python callers expect)."""


@dataclass(frozen=True)
class IntRange:
    """An integer option's range, both ends included."""

    low: int
    high: int
    unit: str = ""

    def describe(self) -> str:
        high = "2**63-1" if self.high == 2**63 - 1 else str(self.high)
        return f"an integer from {self.low} to {high}{self.unit}"

    def check(self, value: object, name: str) -> int:
        """`value`, or a RangeError naming `name` and the range (bools and floats are not integers)."""
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise RangeError(f"{name} {value!r}: expected {self.describe()}")
        return value

    def parse(self, text: str, name: str) -> int:
        """The integer written in `text` (digits only, optional sign), checked."""
        if not _INTEGER.match(text.strip()):
            raise RangeError(f"{name} {text!r}: expected {self.describe()}")
        return self.check(int(text.strip()), name)


@dataclass(frozen=True)
class FloatRange:
    """A finite real option's range; `low_open` excludes `low` itself (e.g. "more than 0")."""

    low: float
    high: float
    low_open: bool = False
    unit: str = ""

    def describe(self) -> str:
        if self.low_open:
            return f"a finite number above {self.low:g}, at most {self.high:g}{self.unit}"
        return f"a finite number from {self.low:g} to {self.high:g}{self.unit}"

    def check(self, value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RangeError(f"{name} {value!r}: expected {self.describe()}")
        value = float(value)
        above_low = value > self.low if self.low_open else value >= self.low
        if not (math.isfinite(value) and above_low and value <= self.high):
            raise RangeError(f"{name} {value!r}: expected {self.describe()}")
        return value

    def parse(self, text: str, name: str) -> float:
        """The decimal number in `text` (no nan, inf, underscores or hex), checked."""
        if not _DECIMAL.match(text.strip()):
            raise RangeError(f"{name} {text!r}: expected {self.describe()}")
        return self.check(float(text.strip()), name)


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64-bit seeds; image k of a prompt uses seed + k
SEED = IntRange(0, MAX_SEED)
THREADS = IntRange(1, 1024)
STEPS = IntRange(1, 1000)  # a base model's default is 50; at 100,000 the scheduler's sigmas are NaN
NUM_IMAGES = IntRange(1, 10_000)
BATCH = IntRange(1, 64)
SAMPLES = IntRange(1, 100_000)
REPEATS = IntRange(1, 1000)
WARMUP = IntRange(0, 100)
CASE_LIMIT = IntRange(1, 1_000_000)
CHECK_TOKENS = IntRange(1, 65_536)  # bench --check M values: 4608 is a 1024 px image's tokens
WORKERS = IntRange(1, 1024)
MIN_SIDE = 64
SIDE_MULTIPLE = 16  # the VAE downsamples by 8 and latents are packed 2x2
MAX_SIDE = 2048  # FLUX.2 [klein]: up to 4 megapixels
MAX_BUILT_IN_SIDE = {"nano": 512, "tiny": 1024}  # nano is native at 128; tiny samples at klein's 1024
SIDE = IntRange(MIN_SIDE, MAX_SIDE, " px, a multiple of 16")
GUIDANCE = FloatRange(0.0, 100.0)
SMOOTHQUANT_ALPHA = FloatRange(0.0, 1.0, low_open=True)
TIME_BUDGET = FloatRange(0.0, 7 * 24 * 3600.0, low_open=True, unit=" s")
CPUS_PER_WORKER = FloatRange(0.01, 1024.0)
GPUS_PER_WORKER = FloatRange(0.0, 64.0)  # 0 (CPU workers) or at least MIN_GPU_FRACTION
MIN_GPU_FRACTION = 0.01
RAY_TIMEOUT = FloatRange(0.0, 600.0, low_open=True, unit=" s")
LORA_SCALE = FloatRange(-100.0, 100.0)
# serve
PORT = IntRange(0, 65535)  # 0: any free port
MAX_QUEUE = IntRange(1, 100_000)
BATCH_WAIT_MS = FloatRange(0.0, 60_000.0, unit=" ms")
REQUEST_TIMEOUT = FloatRange(0.0, 86_400.0, low_open=True, unit=" s")
MAX_PIXELS = IntRange(MIN_SIDE * MIN_SIDE, MAX_SIDE * MAX_SIDE)
MAX_IMAGES_PER_REQUEST = IntRange(1, 64)
MAX_PROMPT_CHARS = IntRange(1, 1_000_000)
MAX_BODY_MB = IntRange(1, 4096)
MAX_REFERENCES = IntRange(1, 4)  # FLUX.2 [klein]: at most 4 reference images


def max_side(base: object) -> int:
    """The largest image side `base` supports: 512 for nano, 1024 for tiny, else 2048."""
    return MAX_BUILT_IN_SIDE.get(str(base).strip().lower(), MAX_SIDE)


def check_side(value: int | None, name: str, base: object = None) -> int | None:
    """None, or a side in 64..max_side(base) that is a multiple of 16; the message says the limit."""
    if value is None:
        return None
    limit = max_side(base)
    side = IntRange(MIN_SIDE, limit, " px, a multiple of 16")
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= limit or value % SIDE_MULTIPLE:
        model = f" ({str(base).strip().lower()} supports at most {limit} px; klein models {MAX_SIDE})" if limit != MAX_SIDE else ""
        raise RangeError(f"{name} {value!r}: expected {side.describe()}{model}")
    return value


def check_seed_span(seed: int, count: int, name: str = "--seed") -> None:
    """Seeds seed .. seed + count - 1 must all be valid (image k of a prompt uses seed + k)."""
    SEED.check(seed, name)
    if seed + count - 1 > MAX_SEED:
        raise RangeError(f"{name} {seed} with {count} images per prompt reaches seed {seed + count - 1}; the last must be at most 2**63-1 = {MAX_SEED}")


def check_gpus_per_worker(value: float | None, name: str = "--gpus-per-worker") -> float | None:
    if value is None:
        return None
    value = GPUS_PER_WORKER.check(value, name)
    if 0 < value < MIN_GPU_FRACTION:
        raise RangeError(f"{name} {value:g}: expected 0 (CPU workers) or a finite number from {MIN_GPU_FRACTION:g} to {GPUS_PER_WORKER.high:g}")
    return value
