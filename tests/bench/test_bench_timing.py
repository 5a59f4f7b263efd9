"""Timing statistics and memory probes of flux2_int8.bench.timing."""

from __future__ import annotations

import time

import pytest
import torch

from flux2_int8.bench.timing import (
    DeviceClock,
    Stats,
    device_allocated_bytes,
    device_peak_bytes,
    host_rss_bytes,
    host_rss_peak_bytes,
    interleaved_medians,
    reset_peak_memory,
    time_calls,
    time_once,
)


def test_stats_summarise_odd_and_even_counts():
    odd = Stats.from_samples([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (odd.median_s, odd.min_s, odd.max_s, odd.repeats) == (3.0, 1.0, 10.0, 5)
    assert odd.mean_s == pytest.approx(4.0)
    even = Stats.from_samples([4.0, 1.0, 2.0, 3.0])
    assert even.median_s == pytest.approx(2.5)


def test_stats_scaled_multiplies_every_time_but_not_the_count():
    scaled = Stats.from_samples([1.0, 2.0, 4.0]).scaled(4)
    assert (scaled.median_s, scaled.min_s, scaled.max_s, scaled.repeats) == (8.0, 4.0, 16.0, 3)
    assert scaled.to_dict()["mean_s"] == pytest.approx(28 / 3)


def test_stats_refuse_no_samples():
    with pytest.raises(ValueError, match="zero timings"):
        Stats.from_samples([])


def test_time_calls_runs_warmup_then_repeats_and_measures_the_call():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.02)

    stats = time_calls(work, "cpu", repeats=3, warmup=2)
    assert len(calls) == 5
    assert stats.repeats == 3
    assert 0.02 <= stats.min_s <= stats.median_s <= stats.max_s < 1.0


def test_time_calls_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_calls(lambda: None, "cpu", repeats=0)


def test_time_once_and_cpu_clock_measure_elapsed_seconds():
    seconds, value = time_once(lambda: time.sleep(0.02) or 7, "cpu")
    assert 0.02 <= seconds < 1.0 and value == 7
    clock = DeviceClock("cpu")
    start = clock.mark()
    time.sleep(0.01)
    assert clock.seconds(start, clock.mark()) >= 0.01


def test_device_memory_is_none_off_cuda():
    assert device_peak_bytes("cpu") is None
    assert device_allocated_bytes("cpu") is None


def test_host_rss_peak_sees_an_allocation_and_resets():
    before = host_rss_bytes()
    block = torch.ones(200_000_000, dtype=torch.uint8)  # touched pages: 200 MB resident
    peak = host_rss_peak_bytes()
    assert peak >= before + 150_000_000
    del block
    if reset_peak_memory("cpu"):
        assert host_rss_peak_bytes() < peak - 100_000_000


def test_interleaved_medians_warm_up_each_then_alternate():
    calls: list[str] = []

    def sleeper(name: str, seconds: float):
        return lambda: (calls.append(name), time.sleep(seconds))

    medians = interleaved_medians({"short": sleeper("short", 0.001), "long": sleeper("long", 0.02)}, "cpu", repeats=3)
    assert calls == ["short", "long"] * 4  # one warm-up each, then three alternating rounds
    assert set(medians) == {"short", "long"} and 0.001 <= medians["short"] < medians["long"]
