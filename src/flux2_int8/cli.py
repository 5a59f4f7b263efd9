"""The `flux2-int8` command: thin subcommands over the Python API.

Each command lives in `flux2_int8.commands.<name>`. A user mistake (any
`Flux2Int8Error`) or operating-system fault (`OSError`: permissions, a full disk)
prints one `Error: ...` line and exits 2, Ctrl-C exits 130 the same way and SIGTERM
143 (the same clean-up as Ctrl-C); set FLUX2_INT8_DEBUG=1 to see the traceback. The
shipped scripts run their work through `run_guarded` too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .errors import Flux2Int8Error, os_error_message
from .signals import EXIT_INTERRUPTED, EXIT_TERMINATED, interruption, sigterm_as_interrupt
from .threads import chosen_threads
from .version import __version__

EXIT_USAGE = 2
__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USAGE", "UsageParser", "build_parser", "main", "run_guarded"]
# Command modules under flux2_int8.commands, in the order `--help` lists them.
COMMAND_MODULES = ("inspect", "plan", "make_tiny", "generate", "demo", "bench", "quantize", "eval", "fetch_weights", "serve")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one `Error:` line and exit code 2, like every other mistake."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"Error: {self.prog}: {message} (see {self.prog} --help)\n")


UsageParser = _Parser  # the shipped scripts' parser: the same one-line usage errors


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flux2-int8", description="INT8 W8A8 FLUX.2 [klein]: inspect, load, generate, quantize, evaluate, benchmark.")
    parser.add_argument("--version", action="version", version=f"flux2-int8 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"flux2_int8.commands.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a usage error (2) or --help / --version (0): the code, for in-process callers too
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    return run_guarded(lambda: _run_with_threads(args))


def _run_with_threads(args: argparse.Namespace) -> object:
    with chosen_threads(getattr(args, "threads", None)):  # --threads, also for pipelines loaded deep inside
        return args.run(args)


def run_guarded(work: Callable[[], object]) -> int:
    """Run `work` with SIGTERM taken as Ctrl-C; a mistake, OS fault or interruption is one `Error:` line and its exit code."""
    try:
        with sigterm_as_interrupt():
            work()
    except Flux2Int8Error as error:
        return _fail(str(error), EXIT_USAGE)
    except BrokenPipeError:  # `flux2-int8 inspect FILE | head`: the reader left early; nothing went wrong here
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # permissions, a full disk, a file gone mid-run: the writers left no partial file
        return _fail(os_error_message(error), EXIT_USAGE)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (signals.Terminated)
        return _fail(*interruption(interrupt))
    return 0


def _fail(message: str, code: int) -> int:
    """Print one `Error:` line (or re-raise under FLUX2_INT8_DEBUG=1 for the traceback)."""
    if os.environ.get("FLUX2_INT8_DEBUG"):
        raise  # noqa: PLE0704 (called only from an except block)
    print(f"Error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
