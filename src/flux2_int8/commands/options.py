"""Options shared by several commands, spelled once so every command means the same by them.

Plain strings only: `--help` must import no torch (a test checks the spellings against
the library's own tuples).
"""

from __future__ import annotations

ACTIVATIONS = ("auto", "static", "dynamic")
ACTIVATIONS_HELP = (
    "how INT8 layers quantize activations: auto (the file's calibrated scales, else per token), "
    "static (the file's input_scale), or dynamic (per token at run time) (default auto)"
)
