"""Run Triton kernels through Triton's CPU interpreter when there is no GPU.

`triton.jit` reads TRITON_INTERPRET when a kernel is defined, so it is set here,
before any test module of this folder imports `flux2_int8.int8.triton_w8a8`.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
