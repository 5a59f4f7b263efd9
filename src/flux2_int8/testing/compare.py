"""Comparing model outputs: the one error measure the tests and tools report."""

from __future__ import annotations

import torch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64 (L2 over all elements)."""
    expected = expected.double()
    return float((actual.double() - expected).norm() / expected.norm())
