"""The images of a run, planned before any model loads: each request's seeds and output paths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import limits
from .output import output_path
from .requests import Request


@dataclass(frozen=True)
class Job:
    """One image to make: its request, its seed and where it goes."""

    request: Request
    seed: int
    path: Path


def plan_jobs(requests: Sequence[Request], num_images: int, out: str | Path) -> list[Job]:
    """Every image of the run with its path; image k of a request uses seed + k."""
    limits.NUM_IMAGES.check(num_images, "num-images")
    total = len(requests) * num_images
    jobs: list[Job] = []
    for request in requests:
        limits.check_seed_span(request.seed, num_images, f"{request.source}: seed" if request.source != "--prompt" else "--seed")
        for k in range(num_images):
            seed = request.seed + k
            jobs.append(Job(request, seed, output_path(out, len(jobs) + 1, total, request.prompt, seed)))
    return jobs
