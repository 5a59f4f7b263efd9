"""The `flux2-int8` command: thin subcommands over the Python API.

Commands import their heavy modules lazily so `--help` is instant. A user mistake
(any `Flux2Int8Error`) prints one `Error: ...` line and exits 2; set
FLUX2_INT8_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from .errors import Flux2Int8Error

EXIT_USAGE = 2


def _inspect(args: argparse.Namespace) -> None:
    from .formats.inspect import describe, format_report

    summary = describe(args.path)
    print(json.dumps(summary, indent=2) if args.json else format_report(summary))


def _make_tiny(args: argparse.Namespace) -> None:
    from .testing import make_tiny_pipeline

    folder = make_tiny_pipeline(args.directory, seed=args.seed)
    print(f"wrote a tiny random-weight klein pipeline to {folder}")


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("inspect", help="describe a checkpoint from its header (no weights are read)")
    parser.add_argument("path", help="a .safetensors file, or a diffusers/ModelOpt transformer folder")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(run=_inspect)


def _add_make_tiny(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("make-tiny", help="write a tiny random-weight klein pipeline (for tests and demos)")
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_make_tiny)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_inspect, _add_make_tiny)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flux2-int8", description="INT8 W8A8 FLUX.2 [klein]: inspect, load, generate, quantize.")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except Flux2Int8Error as error:
        if os.environ.get("FLUX2_INT8_DEBUG"):
            raise
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
