"""Prometheus metrics of one server: queue depth, batch sizes, per-phase latency, images, rejections, memory.

Each app gets its own registry (two apps in one process, as in tests, do not collide).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .batcher import BatchStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 32)


def peak_rss_bytes() -> int:
    """The process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_cuda_bytes() -> int:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return 0
    return int(torch.cuda.max_memory_allocated())


class Metrics:
    """The server's instruments, and the text `/metrics` answers."""

    def __init__(self, queue_depth: Callable[[], float], running: Callable[[], float]):
        self.registry = CollectorRegistry()
        prefix = "flux2_int8_serve"
        self.queue = Gauge(f"{prefix}_queue_depth", "Requests waiting for the model (not running)", registry=self.registry)
        self.queue.set_function(queue_depth)
        Gauge(f"{prefix}_running_images", "Images in the pipeline call now running", registry=self.registry).set_function(running)
        self.batch_size = Histogram(f"{prefix}_batch_size", "Images per pipeline call", buckets=_BATCH_SIZES, registry=self.registry)
        self.phase = Histogram(f"{prefix}_phase_seconds", "Seconds per phase: queue (waiting), pipeline (per batch), encode (per batch), request (whole)", ["phase"], buckets=_SECONDS, registry=self.registry)
        self.images = Counter(f"{prefix}_images", "Images made and returned", registry=self.registry)
        self.requests = Counter(f"{prefix}_requests", "Requests answered, by endpoint and status", ["endpoint", "status"], registry=self.registry)
        self.rejections = Counter(f"{prefix}_rejections", "Requests refused, by reason", ["reason"], registry=self.registry)
        memory = Gauge(f"{prefix}_peak_memory_bytes", "Peak memory of the server process: rss (host), cuda (allocated by torch)", ["kind"], registry=self.registry)
        memory.labels("rss").set_function(peak_rss_bytes)
        memory.labels("cuda").set_function(peak_cuda_bytes)

    def batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.images)
        self.phase.labels("pipeline").observe(stats.seconds)
        for wait in stats.waits:
            self.phase.labels("queue").observe(wait)

    def render(self) -> bytes:
        return generate_latest(self.registry)
