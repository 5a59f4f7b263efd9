"""Running the CLI in-process, for every test folder (tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import contextlib
import io


def run_cli(*args: str) -> tuple[int, str, str]:
    """`flux2-int8 ARGS` in this process: (exit code, stdout, stderr)."""
    from flux2_int8.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exit:
            code = int(exit.code or 0)
    return code, stdout.getvalue(), stderr.getvalue()
