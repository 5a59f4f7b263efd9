"""SIGTERM handled as Ctrl-C is: the same clean-up, one line, the shell's exit code for it.

`kill PID`, a job scheduler's time limit, `docker stop` and systemd all send SIGTERM;
Python's default for it is to die at once, skipping every `finally`, so the temporary
files a writer stages beside its target (`.partial`) would stay on the disk. Raising
`Terminated`, a `KeyboardInterrupt`, from the handler runs the clean-up path each
writer already has for Ctrl-C. Lowest floor: imports nothing of the package.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM; raised where it was, so every clean-up runs as for Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM during the clean-up ends the process at once (the usual "ask twice").
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated`; the previous handler is restored after.

    Only the main thread may set handlers; elsewhere (a server's worker thread) the block
    runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interruption(error: KeyboardInterrupt) -> tuple[str, int]:
    """The one line and exit code for a Ctrl-C or a SIGTERM."""
    if isinstance(error, Terminated):
        return "terminated (SIGTERM); files being written were removed, earlier outputs are intact", EXIT_TERMINATED
    return "interrupted (Ctrl-C); files being written were removed, earlier outputs are intact", EXIT_INTERRUPTED
