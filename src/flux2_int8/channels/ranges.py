"""Max |input| per channel of named linears, recorded by forward pre-hooks during real forwards.

The folding factors of SmoothQuant and of nano-outliers are both made from these ranges.
`quantization.observers.InputAmaxObserver` builds on this observer (adding the per-tensor
max, histograms, rotated ranges and pausing), so a per-channel range is computed in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

_Observer = TypeVar("_Observer", bound="ChannelRangeObserver")


def running_channel_amax(x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
    """float32 [K]: max |x| over every token per channel of the last dim, merged with `previous` (same device)."""
    per_channel = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0).float()
    return per_channel if previous is None else torch.maximum(previous, per_channel.to(previous.device))


class ChannelRangeObserver:
    """Context manager: while active, keeps each of `channels`' max |input| per channel in `channel_amax`.

    Hooks every linear of `module_names` (default: `channels`); the ranges are float32 [K]
    tensors on the input's device, so observing costs no GPU sync.
    """

    def __init__(self, model: nn.Module, channels: Iterable[str], module_names: Iterable[str] | None = None):
        self.model = model
        self.channels = set(channels)
        self.module_names = sorted(self.channels) if module_names is None else list(module_names)
        self.channel_amax: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def observe(self, name: str, x: torch.Tensor) -> None:
        """Take in one input `x` ([..., K]) of linear `name`."""
        if name in self.channels:
            self.channel_amax[name] = running_channel_amax(x, self.channel_amax.get(name))

    def _hook(self, name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            self.observe(name, args[0].detach())

        return hook

    def __enter__(self: _Observer) -> _Observer:
        for name in self.module_names:
            self._handles.append(self.model.get_submodule(name).register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
