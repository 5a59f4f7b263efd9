"""Intra-op threads that fit the work: one for small models, unless the user says otherwise.

PyTorch starts one intra-op thread per core. On a model whose GEMMs are a few dozen wide
(the built-in tiny and nano pipelines) each operation is far too small to split, and the
threads only spin and wait: on a busy 2-core machine `generate` on the tiny model took
16 s with the default threads and 0.9 s with one. Real klein models (hidden 3072/4096)
keep PyTorch's default. `OMP_NUM_THREADS` or an explicit `--threads` always wins.

Pipelines of small models run each call under `fitted_threads` (generate/builtin.py), so
the Python API behaves as the CLI does without changing the caller's count; a command's
`--threads N` reaches them through `chosen_threads`, which the CLI holds for the command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .limits import THREADS

# Hidden sizes up to this run on one thread: the tiny (32) and nano (64) models; klein is 3072+.
SMALL_HIDDEN_SIZE = 512
# An explicit count chosen around a whole run (a command's --threads), for code that loads pipelines itself.
_CHOSEN: ContextVar[int | None] = ContextVar("flux2_int8_threads", default=None)


@contextmanager
def chosen_threads(count: int | None) -> Iterator[None]:
    """Within the block, `fitted_thread_count` takes `count` (None: no choice) where no count is requested."""
    token = _CHOSEN.set(count)
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def hidden_size(transformer_config: dict) -> int:
    """num_attention_heads x attention_head_dim of a Flux2Transformer2DModel config."""
    return int(transformer_config.get("num_attention_heads", 0)) * int(transformer_config.get("attention_head_dim", 0))


def fitted_thread_count(hidden: int, requested: int | None = None) -> int | None:
    """The thread count to use, or None to leave PyTorch's as it is."""
    if requested is None:
        requested = _CHOSEN.get()
    if requested is not None:
        return THREADS.check(requested, "threads")
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return 1 if 0 < hidden <= SMALL_HIDDEN_SIZE else None


@contextmanager
def fitted_threads(hidden: int, requested: int | None = None) -> Iterator[int]:
    """Run the block with `fitted_thread_count` threads, then restore the caller's count."""
    import torch

    before = torch.get_num_threads()
    count = fitted_thread_count(hidden, requested)
    if count is not None:
        torch.set_num_threads(count)
    inside = torch.get_num_threads()
    try:
        yield inside
    finally:
        # Restored only if still ours: a count someone changed meanwhile (a callback, a call
        # that overlapped from another thread and restored first) is theirs to keep.
        if torch.get_num_threads() == inside:
            torch.set_num_threads(before)
