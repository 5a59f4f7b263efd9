"""Timing and memory measurement that is honest on both CUDA and CPU.

CUDA work is asynchronous, so a host clock read right after a call measures the
launch, not the work: on CUDA every interval is taken between two events recorded
on the device's own timeline, and read only after a synchronize. On CPU the work
is done when the call returns, so `time.perf_counter` is exact. Compile time is
host work, so a first call is always timed on the host clock with a synchronize
on both sides.
"""

from __future__ import annotations

import re
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
T = TypeVar("T")
# A timing whose spread (max - min) is wider than this fraction of its median is flagged noisy
# in every report: a ratio taken from it can be off by as much as the spread.
NOISY_SPREAD = 0.5


@dataclass(frozen=True)
class Stats:
    """Summary of repeated timings, in seconds. The median is the headline number:
    one slow outlier (a page fault, a clock ramp) moves the mean but not the median."""

    median_s: float
    min_s: float
    max_s: float
    mean_s: float
    repeats: int

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("cannot summarise zero timings")
        return cls(
            median_s=float(statistics.median(samples)),
            min_s=float(min(samples)),
            max_s=float(max(samples)),
            mean_s=float(statistics.fmean(samples)),
            repeats=len(samples),
        )

    def scaled(self, factor: float) -> Stats:
        """The same statistics multiplied by `factor` (e.g. steps x one step)."""
        return Stats(self.median_s * factor, self.min_s * factor, self.max_s * factor, self.mean_s * factor, self.repeats)

    @property
    def spread_s(self) -> float:
        return self.max_s - self.min_s

    @property
    def noisy(self) -> bool:
        """Whether the spread is wider than NOISY_SPREAD times the median (other work on the machine, clock changes)."""
        return self.spread_s > NOISY_SPREAD * self.median_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "noisy": self.noisy}


class DeviceClock:
    """Timestamps on the timeline where the work runs: CUDA events, or the host clock on CPU."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"

    def mark(self) -> Any:
        """A timestamp: a recorded `torch.cuda.Event` on CUDA, a float (seconds) on CPU."""
        if self.is_cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two marks (waits for the end mark on CUDA)."""
        if self.is_cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return end - start

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)


def time_calls(fn: Callable[[], object], device: torch.device | str, repeats: int, warmup: int = 1) -> Stats:
    """Median/min/max of `repeats` calls of `fn` after `warmup` untimed ones.

    Calls are queued back to back; on CUDA each call is bracketed by its own pair of
    events, so one sample is that call's span on the device, launch gaps included.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    clock = DeviceClock(device)
    for _ in range(warmup):
        fn()
    clock.synchronize()
    marks = []
    for _ in range(repeats):
        start = clock.mark()
        fn()
        marks.append((start, clock.mark()))
    clock.synchronize()
    return Stats.from_samples([clock.seconds(start, end) for start, end in marks])


def interleaved_medians(functions: dict[str, Callable[[], object]], device: torch.device | str, repeats: int) -> dict[str, float]:
    """Median seconds of each function after one warm-up call each, the functions run in alternation.

    Alternating (a, b, c, a, b, c, ...) lets load from other processes, or a clock
    change, hit every side alike, so the ratios between them hold even on a shared machine.
    """
    for function in functions.values():
        function()  # warm-up: first-call allocation, thread start-up, compilation
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            samples[name].append(time_calls(function, device, repeats=1, warmup=0).median_s)
    return {name: Stats.from_samples(values).median_s for name, values in samples.items()}


def time_once(fn: Callable[[], T], device: torch.device | str) -> tuple[float, T]:
    """Wall seconds of one call, synchronized on both sides (first calls, compile, loading), and its result."""
    clock = DeviceClock(device)
    clock.synchronize()
    start = time.perf_counter()
    value = fn()
    clock.synchronize()
    return time.perf_counter() - start, value


def reset_peak_memory(device: torch.device | str) -> bool:
    """Start a new peak window for device memory and host RSS.

    Returns whether the host RSS peak could be reset (Linux `clear_refs`); when it
    could not, `host_rss_peak_bytes` is the peak since the process started.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        _PROC_CLEAR_REFS.write_text("5")  # "5" resets the peak RSS (VmHWM) of this process
        return True
    except OSError:
        return False


def device_peak_bytes(device: torch.device | str) -> int | None:
    """`torch.cuda.max_memory_allocated` since the last reset; None off CUDA."""
    device = torch.device(device)
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def device_allocated_bytes(device: torch.device | str) -> int | None:
    """Bytes the caching allocator has handed out now; None off CUDA."""
    device = torch.device(device)
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None


def host_rss_peak_bytes() -> int:
    """Peak resident set size of this process (VmHWM), in bytes."""
    found = _read_status_kib("VmHWM")
    if found is not None:
        return found * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def host_rss_bytes() -> int:
    """Current resident set size of this process (VmRSS), in bytes (peak where unreadable)."""
    found = _read_status_kib("VmRSS")
    return found * 1024 if found is not None else host_rss_peak_bytes()


def _read_status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _PROC_STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None
