"""`eval --ray`: the evaluation's images made by a pool of actors, into the same folder layout.

The planned work is the single-process plan (`Generator.plan`): per model, the cases
whose files are missing. Models go one after the other, reference first (the
candidates edit its inputs and replay its trajectories); within a model, every actor
loads the pipeline once and makes cases with the very method one process uses
(`Work.make`), so each file lands atomically under its case id, byte-identical to a
single-process run on the same kind of device. Scoring stays with the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from ..evaluate.layout import RunSettings, write_settings
from ..evaluate.runner import Generator, Work
from ..evaluate.suite import Case
from .cluster import Cluster
from .pool import fan_out


@dataclass(frozen=True)
class CaseDone:
    """A case made by a worker, and the sampling it used (the first load fixes the defaults)."""

    case: str
    steps: int | None
    guidance: float | None


def generate_on_cluster(cluster: Cluster, generator: Generator, work: Sequence[Work], progress: bool = True) -> RunSettings:
    """Make every planned case on the cluster (one bar over all models); returns the resolved settings."""
    total = sum(len(item.cases) for item in work)
    with fan_out(cluster, total, "generating", "image", progress) as pool:
        for item in work:
            done: list[CaseDone] = pool.map(item.model.name, item.cases, partial(_case_worker, generator, item))
            if done and (done[0].steps, done[0].guidance) != (generator.settings.steps, generator.settings.guidance):
                generator.settings = replace(generator.settings, steps=done[0].steps, guidance=done[0].guidance)
                write_settings(generator.layout.run_file, generator.settings)
    return generator.settings


def cluster_fan_out(cluster: Cluster, progress: bool = True) -> Callable[[Generator, Sequence[Work]], RunSettings]:
    """`evaluate(..., fan_out=...)` for this cluster."""
    return partial(generate_on_cluster, cluster, progress=progress)


def _case_worker(generator: Generator, item: Work) -> Callable[[Case], CaseDone]:
    """Runs in an actor: load the model once, then make cases as one process would."""
    pipeline = generator.load(item.model)

    def make(case: Case) -> CaseDone:
        item.make(pipeline, item.model, case)
        return CaseDone(case.id, generator.settings.steps, generator.settings.guidance)

    return make
