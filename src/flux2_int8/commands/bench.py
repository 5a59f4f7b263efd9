"""`flux2-int8 bench`: speed and memory of BF16 vs INT8 (vs FP8), eager vs compiled,
per INT8 backend and with or without fused q/k/v.

Writes `bench-<variant>.json` and `bench-<variant>.md` into --out after every finished
run (so a timeout or a kill keeps what was measured) and prints the Markdown at the end.
`--check` compares every INT8 backend with the reference instead of timing. See
docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import limits
from ..outputs import add_overwrite_flag
from ..variants import VARIANTS
from .options import ACTIVATIONS, BUILT_IN_BASES, STEPS, DeprecatedAlias, in_range, print_json, add_device, add_dtype, add_run_flags, add_size, apply_threads, resolve_size, silence_loading_bars

VARIANT_CHOICES = (*VARIANTS, "tiny", "nano")  # the built-ins bench times (bench.pipeline_bench.BUILT_IN)
_SWITCH = {"off": False, "on": True}
# Spelled out here so --help imports no torch; run() checks them against backends.BACKENDS
# and generate.compilation.COMPILE_MODES ('on' is 'full' there too).
INT8_BACKEND_NAMES = "auto, int_mm, onednn, emulated, reference, triton, triton_prequant"
COMPILE_CHOICES = ("off", "full", "regional", "on")
CHECK_BACKEND_NAMES = "int_mm,triton,triton_prequant,auto"
EXIT_CHECK_FAILED = 1
_CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
# The built-in models run at 128 px: nano's native size, and tiny's VAE decode at 1024 px alone takes seconds on a CPU.
DEFAULT_RESOLUTION, BUILT_IN_DEFAULT_RESOLUTION = 1024, 128


def _parse_list(value: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    from ..errors import ConfigError

    items = tuple(dict.fromkeys(item.strip().lower() for item in value.split(",") if item.strip()))
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise ConfigError(f"{option} '{value}': expected a comma-separated list of {', '.join(allowed)}")
    return items


def _command_line(args: argparse.Namespace) -> str:
    """The invocation with every option spelled out, so a report says exactly how to reproduce it."""
    words = ["flux2-int8", "bench", "--base", args.variant, "--formats", args.formats, "--resolution", str(args.resolution)]
    words += ["--int8-backends", args.int8_backends, "--fuse-qkv", args.fuse_qkv, "--activations", args.activations]
    words += ["--batch", str(args.batch), "--compile", args.compile, "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--device", args.device, "--dtype", args.dtype]
    words += [] if args.steps is None else ["--steps", str(args.steps)]
    flags = (("--random-weights", args.random_weights), ("--full-pipeline", args.full_pipeline), ("--microbench", args.microbench), ("--microbench-only", args.microbench_only), ("--check", args.check))
    words += [flag for flag, on in flags if on]
    words += ["--microbench-shapes", args.microbench_shapes] if args.microbench or args.microbench_only else []
    words += [] if args.microbench_compile is None else ["--microbench-compile", args.microbench_compile]
    words += [] if args.rotation == "off" else ["--rotation", args.rotation]
    words += [] if args.check_tokens is None else ["--check-tokens", args.check_tokens]
    words += [] if args.time_budget is None else ["--time-budget", f"{args.time_budget:g}"]
    words += [] if args.transformer is None else ["--transformer", args.transformer]
    return shlex.join([*words, "--out", args.out])


def _check_out(args: argparse.Namespace, create: bool = True) -> Path:
    """The report folder: never holding the checkpoint timed; someone else's only with --overwrite (ours: it holds bench reports)."""
    from ..outputs import claim_folder, input_files

    out = claim_folder(args.out, input_files(args.transformer), args.overwrite, owned=lambda folder: any(folder.glob("bench-*.json")))
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


_QUIET = False  # --quiet / --json: no progress lines


def _progress(message: str) -> None:
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)


def _parse_tokens(value: str) -> tuple[int, ...]:
    from ..errors import ConfigError

    try:
        tokens = tuple(dict.fromkeys(limits.CHECK_TOKENS.parse(item, "") for item in value.split(",") if item.strip()))
    except limits.RangeError:
        tokens = ()
    if not tokens:
        raise ConfigError(f"--check-tokens '{value}': expected a comma-separated list of integers from 1 to {limits.CHECK_TOKENS.high}, e.g. 1,16,17,4608")
    return tokens


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the report of the runs so far is written on the way out."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise _Interrupted(f"signal {signum}")


class _Report:
    """The bench document so far, rewritten (atomically) on every update."""

    def __init__(self, out: Path, command: str, settings: Any, env: dict[str, Any], time_budget: float | None):
        self.out, self.command, self.settings, self.env, self.time_budget = out, command, settings, env, time_budget
        self.parts: dict[str, Any] = {"result": None, "microbench": None, "check": None}

    def update(self, part: str, value: Any) -> None:
        self.parts[part] = value
        self.write("running")

    def document(self, status: str) -> dict[str, Any]:
        from ..bench import build_document

        return build_document(self.parts["result"], self.parts["microbench"], self.env, self.command, self.settings.variant, check=self.parts["check"], status=status, time_budget_s=self.time_budget)

    def write(self, status: str) -> tuple[Path, Path, Path]:
        from ..bench import write_report

        return write_report(self.out, self.document(status))


def run(args: argparse.Namespace) -> None:
    _check_first(args)  # the options that need no torch, before it is imported
    # Read before torch is imported: importing it can set TORCHINDUCTOR_CACHE_DIR to its default.
    chosen_caches = {name: os.environ[name] for name in _CACHE_VARIABLES if os.environ.get(name)}
    import torch

    from ..bench import environment, format_markdown

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    apply_threads(args, args.variant)
    global _QUIET
    _QUIET = args.quiet or args.json
    silence_loading_bars()
    args.int8_backends = args.int8_backends if args.int8_backends is not None else (CHECK_BACKEND_NAMES if args.check else "auto")
    settings = _settings(args)
    check_tokens = _check_options(args, settings)
    out = _check_out(args)
    report = _Report(out, _command_line(args), settings, environment(settings.device), args.time_budget)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    terminated = False
    try:
        with _fresh_compile_caches(report.env, chosen_caches):
            _run_parts(args, settings, check_tokens, report)
        status = "complete"
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM (a timeout): keep every finished run
        status, terminated = "interrupted", isinstance(interrupt, _Interrupted)
    finally:
        signal.signal(signal.SIGTERM, previous)
    json_path, md_path, html_path = report.write(status)
    if args.json:
        print_json(report.document(status))
    elif not args.quiet:
        print(format_markdown(report.document(status)))
        print(f"wrote {json_path}, {md_path} and {html_path} (charts)")
    if status == "interrupted":
        print("interrupted: the report holds every run finished before the signal", file=sys.stderr)
        if terminated:  # stopped mid-compile, Inductor's workers can hold up a normal exit: leave now, files are written
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_TERMINATED)
        raise SystemExit(EXIT_INTERRUPTED)
    check = report.parts["check"]
    if check is not None and not check.passed:
        print(f"check FAILED: {sum(not case.passed for case in check.cases)} of {len(check.cases)} cases outside the tolerance", file=sys.stderr)
        raise SystemExit(EXIT_CHECK_FAILED)


def _check_first(args: argparse.Namespace) -> None:
    """--base, the size, the time budget and the part options, checked without torch."""
    from ..errors import ConfigError

    if args.variant is None:
        raise ConfigError("bench needs --base: a klein size (klein-4b, klein-9b, ...), tiny or nano")
    width, height = resolve_size(args, args.variant)
    if width != height:
        raise ConfigError(f"--width {width} --height {height}: bench times square images; give one size (--resolution N)")
    args.resolution = width or (BUILT_IN_DEFAULT_RESOLUTION if args.variant in BUILT_IN_BASES else DEFAULT_RESOLUTION)
    if args.resolution <= 0 or args.resolution % 16:
        raise ConfigError(f"--resolution {args.resolution}: expected a positive multiple of 16")
    if args.time_budget is not None and not args.time_budget > 0:
        raise ConfigError(f"--time-budget {args.time_budget:g}: expected a positive number of seconds")
    if args.check and args.microbench_only:
        raise ConfigError("--check and --microbench-only each run one part alone: choose one")
    if args.check_tokens is not None:
        if not args.check:
            raise ConfigError("--check-tokens goes with --check")
        _parse_tokens(args.check_tokens)
    _parse_list(args.compile, COMPILE_CHOICES, "--compile")
    if _parse_rotations(args.rotation) != (None,) and (args.check or not (args.microbench or args.microbench_only)):
        raise ConfigError(f"--rotation {args.rotation} times ConvRot layers in the linear-layer microbenchmark (not --check): add --microbench or --microbench-only")
    _parse_list(args.activations, ACTIVATIONS, "--activations")
    _check_out(args, create=False)


def _parse_rotations(value: str) -> tuple[int | None, ...]:
    """`off,convrot,convrot:16` -> (None, 256, 16): ConvRot group sizes, None for the plain layer (torch-free)."""
    from ..errors import ConfigError, Flux2Int8Error
    from ..quantization.recipe import parse_rotation

    items = [item for item in value.split(",") if item.strip()]
    try:
        groups = tuple(dict.fromkeys(parse_rotation(item) for item in items))
    except Flux2Int8Error as error:
        raise ConfigError(f"{error}; a comma-separated list of them, e.g. off,convrot") from None
    if not groups:
        raise ConfigError(f"--rotation '{value}': expected a comma-separated list of off, convrot or convrot:G, e.g. off,convrot")
    return groups


def _settings(args: argparse.Namespace) -> Any:
    from ..bench import BenchSettings
    from ..bench.random_weights import FORMATS
    from ..generate.compilation import resolve_compile_mode

    compile_modes = tuple(dict.fromkeys(resolve_compile_mode(mode) for mode in _parse_list(args.compile, COMPILE_CHOICES, "--compile")))
    micro_modes = None if args.microbench_compile is None else tuple(dict.fromkeys(resolve_compile_mode(mode) for mode in _parse_list(args.microbench_compile, COMPILE_CHOICES, "--microbench-compile")))
    return BenchSettings(
        variant=args.variant,
        formats=_parse_list(args.formats, FORMATS, "--formats"),
        compile_modes=compile_modes,
        int8_backends=_parse_list(args.int8_backends, _int8_backend_choices(), "--int8-backends"),
        activations=_parse_list(args.activations, ACTIVATIONS, "--activations"),
        fuse_qkv_modes=tuple(_SWITCH[mode] for mode in _parse_list(args.fuse_qkv, tuple(_SWITCH), "--fuse-qkv")),
        resolution=args.resolution,
        steps=args.steps,
        batch=args.batch,
        repeats=args.repeats,
        warmup=args.warmup,
        random_weights=args.random_weights,
        full_pipeline=args.full_pipeline,
        transformer_path=args.transformer,
        device=args.device,
        microbench_variant_only=args.microbench_shapes == "variant",
        microbench_compile_modes=micro_modes,
        microbench_rotations=_parse_rotations(args.rotation),
        dtype=args.dtype,
    )


def _int8_backend_choices() -> tuple[str, ...]:
    from ..bench.pipeline_bench import INT8_BACKENDS

    return INT8_BACKENDS


def _check_options(args: argparse.Namespace, settings: Any) -> tuple[int, ...] | None:
    """Validate every option before anything slow starts; the --check M list (None without --check)."""
    from ..bench.check import CHECK_TOKENS, CPU_KLEIN_CHECK_TOKENS
    from ..bench.pipeline_bench import check_settings
    from ..errors import ConfigError

    check_settings(settings)
    if not args.check:
        if args.check_tokens is not None:
            raise ConfigError("--check-tokens goes with --check")
        return None
    if args.check_tokens is not None:
        return _parse_tokens(args.check_tokens)
    return CPU_KLEIN_CHECK_TOKENS if settings.variant not in BUILT_IN_BASES and settings.device == "cpu" else CHECK_TOKENS


@contextlib.contextmanager
def _fresh_compile_caches(env: dict[str, Any], chosen: dict[str, str]) -> Iterator[None]:
    """Empty Inductor and Triton caches for this run, unless the caller chose their own folders.

    Inductor keeps compiled graphs on disk across processes, so a second run would report a
    compile time of seconds for what costs minutes the first time a user runs it.
    """
    if chosen:
        env["compile_caches"] = ", ".join(f"{name}={value}" for name, value in chosen.items())
        yield
        return
    env["compile_caches"] = "fresh for this run"
    saved = {name: os.environ.get(name) for name in _CACHE_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="flux2-int8-bench-caches-") as folder:
        os.environ.update({name: os.path.join(folder, name.lower()) for name in _CACHE_VARIABLES})
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _run_parts(args: argparse.Namespace, settings: Any, check_tokens: tuple[int, ...] | None, report: _Report) -> None:
    """--check alone; else the transformer plans, then the microbenchmark; all under one budget."""
    from ..bench import run_benchmark
    from ..bench.budget import Budget
    from ..bench.check import run_check
    from ..bench.microbench import run_variant_microbench, variant_shape_configs

    budget = Budget(args.time_budget)
    if check_tokens is not None:
        _progress(f"check: {', '.join(settings.int8_backends)} vs reference at M = {', '.join(map(str, check_tokens))}")
        configs = variant_shape_configs(settings, variant_only=True)
        run_check(configs, settings.device, check_tokens, backends=settings.int8_backends, budget=budget, on_update=lambda result: report.update("check", result), device_name=report.env["device_name"])
        return
    if not args.microbench_only:
        run_benchmark(settings, _progress, budget, on_update=lambda result: report.update("result", result))
    if args.microbench or args.microbench_only:
        run_variant_microbench(settings, _progress, budget, on_update=lambda result: report.update("microbench", result))


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="measure speed and memory: BF16 vs INT8 (vs FP8), eager vs compiled")
    parser.add_argument("--base", dest="variant", choices=VARIANT_CHOICES, help="klein model size (random weights or --transformer), or a built-in model: tiny (random weights; CPU smoke test) or nano (small, trained)")
    parser.add_argument("--variant", dest="variant", choices=VARIANT_CHOICES, action=DeprecatedAlias, new="--base")
    parser.add_argument("--random-weights", action="store_true", help="build the full-size transformer with random weights on the device (no download)")
    parser.add_argument("--full-pipeline", action="store_true", help="also build a random Qwen3 text encoder and VAE, and time whole images")
    parser.add_argument("--transformer", metavar="PATH", help="time this checkpoint (its own format) instead of random weights")
    parser.add_argument("--formats", default="bf16,int8", help="comma-separated: bf16, int8, fp8 (default: bf16,int8)")
    add_size(parser, f"{DEFAULT_RESOLUTION}; {BUILT_IN_DEFAULT_RESOLUTION} for tiny and nano; square: width and height must agree")
    parser.add_argument("--steps", type=STEPS, default=None, help="denoising steps (default: the variant's, 4 for distilled)")
    parser.add_argument("--batch", type=in_range(limits.BATCH), default=1, help="images per call (default: 1)")
    parser.add_argument("--int8-backends", default=None, metavar="LIST", help=f"comma-separated Int8Linear backends; every int8 run is repeated per backend, one report row each: {INT8_BACKEND_NAMES} (default: auto; with --check {CHECK_BACKEND_NAMES})")
    parser.add_argument("--activations", default="auto", metavar="LIST", help="comma-separated: auto, static, dynamic; every int8 run is repeated per mode, one report row each, e.g. static,dynamic compares per-token quantization's cost (default: auto: the file's, static for random weights)")
    parser.add_argument("--fuse-qkv", nargs="?", const="on", default="off", metavar="off|on|off,on", help="fuse each attention's q/k/v (bf16 and int8) into one GEMM before timing; the flag alone means on, off,on times both (default: off)")
    parser.add_argument("--compile", default="off,on", metavar="LIST", help="comma-separated: off (eager), full (the whole transformer compiled), regional (each repeated block, compiled once per block class), on (full) (default: off,on)")
    parser.add_argument("--repeats", type=in_range(limits.REPEATS), default=5, help="timed repeats; the median is reported (default: 5)")
    parser.add_argument("--warmup", type=in_range(limits.WARMUP), default=1, help="untimed calls before timing (default: 1)")
    parser.add_argument("--microbench", action="store_true", help="also time Int8Linear vs BF16 nn.Linear on every klein linear shape")
    parser.add_argument("--microbench-only", action="store_true", help="run only the linear-layer microbenchmark")
    parser.add_argument("--microbench-shapes", choices=("all", "variant"), default="all", help="linear shapes of klein 4B and 9B (all), or of --base alone (default: all)")
    parser.add_argument("--microbench-compile", metavar="LIST", help="the microbenchmark's own compile modes: off and/or on (a single layer compiles the same whole or regionally) (default: as --compile)")
    parser.add_argument("--rotation", default="off", metavar="LIST", help="the microbenchmark's INT8 layers: off (plain), convrot (ConvRot, group 256) and/or convrot:G, comma-separated; one row each per shape, mode and backend, against the same BF16 timing, e.g. off,convrot (default: off)")
    parser.add_argument("--check", action="store_true", help="instead of timing: compare every INT8 backend with the float64 reference on every linear shape of --base (fused q/k/v too), in bf16 and fp16; exit 1 on a failure")
    parser.add_argument("--check-tokens", metavar="LIST", help="M values for --check (default: 1,16,17,4608; 1,16,17 for full-size klein shapes on a CPU)")
    parser.add_argument("--time-budget", type=in_range(limits.TIME_BUDGET), metavar="SECONDS", help="skip each plan (or microbenchmark / check shape) that the seconds left cannot cover, estimated from the slowest one so far; results are written after every finished run either way")
    add_device(parser)
    add_dtype(parser)
    add_run_flags(parser)
    parser.add_argument("--out", required=True, help="folder for bench-<variant>.json and bench-<variant>.md")
    add_overwrite_flag(parser)
    parser.set_defaults(run=run)
