"""Thread counts that fit the model: one for tiny ones, the user's choice always first."""

from __future__ import annotations

import torch

from flux2_int8.threads import fitted_thread_count, fitted_threads, hidden_size
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG
from flux2_int8.variants import get_variant


def test_small_models_get_one_thread_and_klein_keeps_the_default(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert fitted_thread_count(hidden_size(TINY_TRANSFORMER_CONFIG)) == 1
    assert fitted_thread_count(hidden_size(get_variant("klein-4b").architecture.transformer_config())) is None


def test_the_user_decides_first(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert fitted_thread_count(32) is None
    assert fitted_thread_count(32, requested=3) == 3


def test_the_callers_count_is_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with fitted_threads(32) as inside:
            assert inside == 1 == torch.get_num_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_count_changed_inside_the_block_is_not_undone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with fitted_threads(32):
            torch.set_num_threads(3)  # e.g. an overlapping call that restored its caller's count first
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
