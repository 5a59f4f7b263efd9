"""A wall-clock allowance for one bench run, so a short device lease ends with results, not a timeout.

Before each unit of work (a run plan, a microbenchmark shape, a check shape) the caller asks
whether it still fits; the estimate is the longest unit of the same kind already finished,
since the first plan of a run (BF16, usually) is no slower than the others and a late
skip costs nothing while an overrun loses the call. A unit with no predecessor of its kind
runs whenever any time is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Budget:
    """`seconds` of wall time from creation (None: unlimited); `finished` holds each kind's unit durations."""

    seconds: float | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    finished: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float | None:
        """Seconds left, None when unlimited."""
        return None if self.seconds is None else self.seconds - (self.clock() - self.started)

    def estimate(self, kind: str) -> float | None:
        """The longest finished unit of `kind`, None before the first."""
        durations = self.finished.get(kind)
        return max(durations) if durations else None

    def skip_reason(self, kind: str) -> str | None:
        """Why the next unit of `kind` must be skipped, or None when it fits."""
        left = self.remaining()
        if left is None:
            return None
        if left <= 0:
            return f"time budget of {self.seconds:.0f} s spent"
        estimate = self.estimate(kind)
        if estimate is not None and estimate > left:
            return f"needs about {estimate:.0f} s (the longest {kind} so far), {left:.0f} s of the {self.seconds:.0f} s budget left"
        return None

    def record(self, kind: str, seconds: float) -> None:
        self.finished.setdefault(kind, []).append(seconds)

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Record the duration of the enclosed unit of `kind` (only when it finishes)."""
        started = self.clock()
        yield
        self.record(kind, self.clock() - started)
