"""Recording the inputs of linears during real forward passes: max, per-channel max, histogram.

Forward pre-hooks on the model itself: no second copy of the model, and whatever
drives the model (one transformer call or a whole pipeline run) is observed as is.
Running maxima stay tensors on the input's device, so observing costs no GPU sync;
only the optional histograms (percentile calibration) read one value back per call.

Every statistic merges exactly (`ObserverState`, `InputAmaxObserver.merge`): maxima
and counts do by nature, and the histogram's bins depend only on the largest value
seen, not on the order values came in. So calibration split across processes
(`flux2_int8.scale_out`) gives the very ranges one process gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..channels import ChannelRangeObserver
from ..int8.rotation import hadamard, rotate

HISTOGRAM_BINS = 2048
# The smallest histogram range: inputs below it (all zero, or nearly) share the first bins.
_MIN_UPPER = 2.0**-24


class AbsHistogram:
    """Counts of |x| in equal bins over [0, upper), memory fixed at `bins` int64 counts.

    `upper` is the smallest power of two above every value seen (at least 2**-24);
    when a larger value arrives it doubles and bins merge in pairs, so earlier counts
    stay exact. A value's bin is floor(|x| * bins / upper), an exact product by a power
    of two, and halving it is what a pair merge does: the counts therefore depend only
    on the final `upper`, never on the order or grouping of the values, and two
    histograms merge exactly (`merge`). A percentile is read to within one bin
    (upper / bins, at most 2 / bins of the max).
    """

    def __init__(self, bins: int = HISTOGRAM_BINS):
        if bins < 2 or bins & (bins - 1):
            raise ValueError(f"histogram bins must be a power of two >= 2, got {bins}")
        self.bins = bins
        self.upper = 0.0
        self.counts: torch.Tensor | None = None
        self.amax = 0.0

    def add(self, x: torch.Tensor) -> None:
        values = x.detach().abs().float().reshape(-1)
        top = float(values.max()) if values.numel() else 0.0
        self.amax = max(self.amax, top)
        if self.counts is None:
            self.counts = torch.zeros(self.bins, dtype=torch.int64, device=values.device)
            self.upper = _MIN_UPPER
        self._widen(_power_above(top))
        index = (values * (self.bins / self.upper)).long()
        self.counts += torch.bincount(index, minlength=self.bins)

    def merge(self, other: AbsHistogram) -> None:
        """Add `other`'s counts, as if its values had been added here (bit-exact, either order)."""
        if other.bins != self.bins:
            raise ValueError(f"cannot merge a {other.bins}-bin histogram into a {self.bins}-bin one")
        if other.counts is None:
            return
        if self.counts is None:
            self.counts, self.upper = torch.zeros_like(other.counts, device=other.counts.device), other.upper
        self._widen(other.upper)
        counts, upper = other.counts.to(self.counts.device), other.upper
        while upper < self.upper:
            counts, upper = _halve(counts), upper * 2
        self.counts += counts
        self.amax = max(self.amax, other.amax)

    def _widen(self, upper: float) -> None:
        """Double the range (merging bins in pairs) until it reaches `upper`."""
        assert self.counts is not None
        while self.upper < upper:
            self.counts = _halve(self.counts)
            self.upper *= 2

    def percentile(self, percent: float) -> float:
        """The smallest bin edge with at least `percent` % of the values at or below it (<= amax)."""
        if self.counts is None:
            raise ValueError("no values were recorded")
        cumulative = self.counts.cumsum(0)
        needed = math.ceil(percent / 100 * int(cumulative[-1]))
        index = int(torch.searchsorted(cumulative, torch.tensor(needed, device=cumulative.device)))
        return min((index + 1) * self.upper / self.bins, self.amax)


def _power_above(value: float) -> float:
    """The smallest power of two strictly above `value` (exact: from the float's exponent)."""
    return math.ldexp(1.0, math.frexp(value)[1]) if value > 0 else 0.0


def _halve(counts: torch.Tensor) -> torch.Tensor:
    """The counts over a range twice as wide: bins merged in pairs into the lower half."""
    merged = counts.view(-1, 2).sum(dim=1)
    return torch.cat([merged, torch.zeros_like(merged)])


@dataclass
class ObserverState:
    """What an `InputAmaxObserver` recorded, on the CPU, to send between processes and merge.

    `amax` and `channel_amax` are float32 tensors (0-d and [K]); `histograms` empty
    unless percentile calibration asked for them.
    """

    amax: dict[str, torch.Tensor] = field(default_factory=dict)
    channel_amax: dict[str, torch.Tensor] = field(default_factory=dict)
    histograms: dict[str, AbsHistogram] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


class InputAmaxObserver(ChannelRangeObserver):
    """Context manager: while active, keeps a running max |x| of each named linear's input.

    `channels` names the linears whose max per input channel ([K], over every token)
    is kept too (SmoothQuant needs it; `channels.ChannelRangeObserver` records it);
    `histogram_bins` > 0 keeps an `AbsHistogram` of every linear (percentile
    calibration). `paused()` stops recording for a while, e.g. while the model makes
    reference images that are not calibration samples.
    """

    def __init__(self, model: nn.Module, module_names: Iterable[str], channels: Iterable[str] = (), histogram_bins: int = 0, rotations: dict[str, int] | None = None):
        super().__init__(model, channels, module_names=module_names)
        # ConvRot layers (name -> G): their range and histogram are of the rotated input, which
        # is what their static input_scale quantizes; per-channel maxima stay the raw input's.
        self.rotations = dict(rotations or {})
        self.histogram_bins = histogram_bins
        self.histograms: dict[str, AbsHistogram] = {}
        self.calls: dict[str, int] = {}
        self.recording = True
        self._amax: dict[str, torch.Tensor] = {}

    @property
    def amax(self) -> dict[str, float]:
        """Max |input| per linear seen so far (linears never called are absent)."""
        return {name: float(value) for name, value in self._amax.items()}

    def percentile(self, percent: float) -> dict[str, float]:
        """The `percent` percentile of |input| per linear (needs `histogram_bins` > 0)."""
        return {name: histogram.percentile(percent) for name, histogram in self.histograms.items()}

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.recording = False
        try:
            yield
        finally:
            self.recording = True

    def state(self) -> ObserverState:
        """A CPU copy of everything recorded, for `merge` in another process."""
        histograms = {}
        for name, histogram in self.histograms.items():
            copy = AbsHistogram(histogram.bins)
            copy.upper, copy.amax = histogram.upper, histogram.amax
            copy.counts = None if histogram.counts is None else histogram.counts.cpu()
            histograms[name] = copy
        return ObserverState(
            amax={name: value.cpu() for name, value in self._amax.items()},
            channel_amax={name: value.cpu() for name, value in self.channel_amax.items()},
            histograms=histograms,
            calls=dict(self.calls),
        )

    def merge(self, state: ObserverState) -> None:
        """Take in what another observer of the same layers recorded, as if this one had seen it too."""
        for name, value in state.amax.items():
            self._amax[name] = value if name not in self._amax else torch.maximum(self._amax[name], value.to(self._amax[name].device))
        for name, value in state.channel_amax.items():
            previous = self.channel_amax.get(name)
            self.channel_amax[name] = value if previous is None else torch.maximum(previous, value.to(previous.device))
        for name, histogram in state.histograms.items():
            self.histograms.setdefault(name, AbsHistogram(histogram.bins)).merge(histogram)
        for name, count in state.calls.items():
            self.calls[name] = self.calls.get(name, 0) + count

    def observe(self, name: str, x: torch.Tensor) -> None:
        """Take in one input `x` ([..., K]) of linear `name`, unless paused."""
        if not self.recording:
            return
        quantized = x if name not in self.rotations else rotate(x.reshape(-1, x.shape[-1]), hadamard(self.rotations[name], x.device))
        value = quantized.abs().amax().float()
        self._amax[name] = value if name not in self._amax else torch.maximum(self._amax[name], value)
        self.calls[name] = self.calls.get(name, 0) + 1
        super().observe(name, x)
        if self.histogram_bins:
            self.histograms.setdefault(name, AbsHistogram(self.histogram_bins)).add(quantized)


def linear_names(model: nn.Module) -> list[str]:
    """Names of every `nn.Linear` in the model, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
