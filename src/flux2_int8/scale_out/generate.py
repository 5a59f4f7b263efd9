"""`generate --prompts --ray`: a prompts file's images made by a pool of actors.

The jobs (paths, seeds) are planned here exactly as one process plans them, each actor
loads the pipeline once with the command's options, and each image is made and
written atomically by the same function one process uses (`run_job`), so the files
are the single-process files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..generate import Generated, Job, load_pipeline, resolve_sampling, run_job
from .cluster import Cluster
from .pool import fan_out


@dataclass(frozen=True)
class GenerateSpec:
    """What every worker needs: `load_pipeline`'s keyword arguments and the sampling options as given."""

    load: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class JobDone:
    """A job made by a worker, with the steps it used (the model's default when none was given)."""

    generated: Generated
    steps: int


def generate_on_cluster(cluster: Cluster, jobs: Sequence[Job], spec: GenerateSpec, progress: bool = True) -> tuple[list[Generated], int]:
    """Make every job on the cluster: (what was made, in job order; the steps used)."""
    with fan_out(cluster, len(jobs), "generating", "image", progress) as pool:
        done: list[JobDone] = pool.map("images", jobs, partial(_job_worker, spec))
    return [item.generated for item in done], done[0].steps if done else 0


def _job_worker(spec: GenerateSpec) -> Callable[[Job], JobDone]:
    """Runs in an actor: load the pipeline once, then make jobs as one process would."""
    pipeline = load_pipeline(**spec.load)
    pipeline.set_progress_bar_config(disable=True)
    steps, guidance = resolve_sampling(pipeline, spec.steps, spec.guidance)
    base, checkpoint, text_encoder = str(spec.load["base"]), spec.load.get("transformer"), spec.load.get("text_encoder")

    def make(job: Job) -> JobDone:
        return JobDone(run_job(pipeline, job, steps, guidance, spec.width, spec.height, base, checkpoint, text_encoder), steps)

    return make
