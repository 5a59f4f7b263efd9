"""Recording the max |input| of linears during real forward passes (calibration 'max').

Forward pre-hooks on the model itself: no second copy of the model, and whatever
drives the model (one transformer call or a whole pipeline run) is observed as is.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class InputAmaxObserver:
    """Context manager: while active, keeps a running max |x| of each named linear's input."""

    def __init__(self, model: nn.Module, module_names: Iterable[str]):
        self.model = model
        self.module_names = list(module_names)
        self.amax: dict[str, float] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _record(self, name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple) -> None:
            value = float(args[0].detach().abs().amax())
            self.amax[name] = max(self.amax.get(name, 0.0), value)

        return hook

    def __enter__(self) -> InputAmaxObserver:
        for name in self.module_names:
            self._handles.append(self.model.get_submodule(name).register_forward_pre_hook(self._record(name)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def linear_names(model: nn.Module) -> list[str]:
    """Names of every `nn.Linear` in the model, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
