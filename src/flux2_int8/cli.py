"""The `flux2-int8` command: thin subcommands over the Python API.

Each command lives in `flux2_int8.commands.<name>`. A user mistake (any
`Flux2Int8Error`) prints one `Error: ...` line and exits 2; set FLUX2_INT8_DEBUG=1
to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import Flux2Int8Error
from .version import __version__

EXIT_USAGE = 2
# Command modules under flux2_int8.commands, in the order `--help` lists them.
COMMAND_MODULES = ("inspect", "make_tiny", "generate", "demo", "bench", "quantize", "eval", "fetch_weights")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one `Error:` line and exit code 2, like every other mistake."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"Error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flux2-int8", description="INT8 W8A8 FLUX.2 [klein]: inspect, load, generate, quantize, evaluate, benchmark.")
    parser.add_argument("--version", action="version", version=f"flux2-int8 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"flux2_int8.commands.{name}").register(commands)
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
