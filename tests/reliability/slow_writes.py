"""Run the CLI (or a shipped script) with every file write stalled once its temporary is on disk.

    python slow_writes.py cli ARGS...            # flux2-int8 ARGS
    python slow_writes.py path/to/script.py ARGS...

After safetensors or PIL has written a file, the writer prints `stalled writing PATH` on
stderr and sleeps, as a slow disk would hold it: a test then sends a real signal while
the `.partial` file (or staging folder) exists, which a fast tiny-model write would not
leave time for. Nothing else changes: the product's own code runs, signals and all.
"""

from __future__ import annotations

import runpy
import sys
import time

import safetensors.torch
from PIL import Image

STALL_S = 120


def _stall(path: object) -> None:
    print(f"stalled writing {path}", file=sys.stderr, flush=True)
    time.sleep(STALL_S)


def _patch() -> None:
    save_file = safetensors.torch.save_file
    save_image = Image.Image.save

    def slow_save_file(tensors, filename, *args, **kwargs):  # type: ignore[no-untyped-def]
        save_file(tensors, filename, *args, **kwargs)
        _stall(filename)

    def slow_save_image(self, fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        save_image(self, fp, *args, **kwargs)
        _stall(getattr(fp, "name", fp))

    safetensors.torch.save_file = slow_save_file
    Image.Image.save = slow_save_image


if __name__ == "__main__":
    _patch()
    target, arguments = sys.argv[1], sys.argv[2:]
    if target == "cli":
        from flux2_int8.cli import main

        sys.exit(main(arguments))
    sys.argv = [target, *arguments]
    runpy.run_path(target, run_name="__main__")
