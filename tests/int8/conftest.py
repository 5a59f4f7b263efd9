"""Run Triton kernels through Triton's CPU interpreter when there is no GPU.

`triton.jit` reads TRITON_INTERPRET when a kernel is defined, so it is set here,
before any test module of this folder imports `flux2_int8.int8.triton_w8a8`. Triton
itself is usually imported earlier (diffusers imports it), so triton.language's own
@jit helpers stay compiled-only; the kernel does not call them. Setting the variable
for the whole session (tests/conftest.py) would lift that restriction.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
