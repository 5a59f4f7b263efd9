"""`quantize --ray`: the calibration samples split across actors, their statistics merged exactly.

Each actor loads the float pipeline once, and for each batch of samples runs the
single-process calibration (`run_calibration`) with fresh observers of the same
layers, and returns what they recorded (`ObserverState`). Every sample's noise is
seeded by its prompt id and every reference image is made from its own record, so a
sample is computed the same wherever it runs; maxima, counts and the fixed-bin
histograms then merge without rounding (see `quantization.observers`), so the ranges,
and the checkpoint, are bit-identical to the single-process ones.

The driver keeps the loaded pipeline: it lists the layers, checks the options, and
exports the checkpoint from the merged statistics, as `quantize` always does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..generate.pipeline import Offload
from ..quantization.calibrate import CalibrationRun, Schedule, run_calibration
from ..quantization.observers import InputAmaxObserver, ObserverState
from ..quantization.prompts import PromptRecord, PromptSet, reference_records
from .cluster import Cluster
from .pool import fan_out

if TYPE_CHECKING:
    from diffusers import Flux2KleinPipeline

# Batches per worker: enough for a live bar and cheap retries, few enough that each
# batch's returned histograms (bins x layers) stay small next to its compute.
_BATCHES_PER_WORKER = 4


@dataclass(frozen=True)
class ObserverSpec:
    """An observer to rebuild in a worker: the pipeline component it watches and its settings."""

    component: str
    module_names: tuple[str, ...]
    channels: tuple[str, ...]
    histogram_bins: int


@dataclass(frozen=True)
class PipelineSpec:
    """How each worker loads the float pipeline (`quantization.api.load_float_pipeline`'s arguments)."""

    base: str | Path
    transformer: str | Path | None
    device: str | None
    dtype: torch.dtype
    offload: Offload


def cluster_calibrator(cluster: Cluster, pipeline: PipelineSpec) -> Callable[..., CalibrationRun]:
    """`quantize(..., calibrator=...)` for this cluster."""
    return partial(calibrate_on_cluster, cluster, pipeline)


def calibrate_on_cluster(
    cluster: Cluster, pipeline: PipelineSpec, pipe: Flux2KleinPipeline, samples: Sequence[PromptRecord], prompts: PromptSet,
    schedule: Schedule, resolution: int, seed: int, observers: Sequence[InputAmaxObserver], progress: bool = True,
) -> CalibrationRun:
    """`run_calibration` over the cluster: the merged statistics go into `observers` (never attached here).

    Nothing to calibrate (dynamic activations without SmoothQuant or text encoder) starts no pool.
    """
    if not samples:
        return run_calibration(pipe, samples, prompts, schedule, resolution, seed, observers, progress)
    specs = [_spec(pipe, observer) for observer in observers]
    batches = _batches(list(samples), cluster.workers)
    start = time.perf_counter()
    with fan_out(cluster, len(samples), "calibrating", "sample", progress) as pool:
        worker = partial(_calibration_worker, pipeline, specs, prompts, schedule, resolution, seed)
        states: list[list[ObserverState]] = pool.map("calibration", batches, worker, sizes=[len(b) for b in batches])
    for batch_states in states:
        for observer, state in zip(observers, batch_states, strict=True):
            observer.merge(state)
    references = reference_records(prompts, samples)  # what run_calibration generates, once each
    return CalibrationRun(tuple(r.id for r in samples), len(references), time.perf_counter() - start)


def _batches(samples: list[PromptRecord], workers: int) -> list[list[PromptRecord]]:
    size = max(1, math.ceil(len(samples) / (workers * _BATCHES_PER_WORKER)))
    return [samples[i : i + size] for i in range(0, len(samples), size)]


def _spec(pipe: Flux2KleinPipeline, observer: InputAmaxObserver) -> ObserverSpec:
    component = next((name for name, module in pipe.components.items() if module is observer.model), None)
    if component is None:
        raise ValueError("an observer watches a model that is not a component of the pipeline")
    return ObserverSpec(component, tuple(observer.module_names), tuple(sorted(observer.channels)), observer.histogram_bins)


def _calibration_worker(
    pipeline: PipelineSpec, specs: Sequence[ObserverSpec], prompts: PromptSet, schedule: Schedule, resolution: int, seed: int,
) -> Callable[[list[PromptRecord]], list[ObserverState]]:
    """Runs in an actor: load the float pipeline once, then calibrate batches with fresh observers."""
    from ..quantization.api import load_float_pipeline

    pipe = load_float_pipeline(pipeline.base, pipeline.transformer, pipeline.device, pipeline.dtype, pipeline.offload)

    def calibrate(batch: list[PromptRecord]) -> list[ObserverState]:
        observers = [_observer(pipe, spec) for spec in specs]
        run_calibration(pipe, batch, prompts, schedule, resolution, seed, observers, progress=False)
        return [observer.state() for observer in observers]

    return calibrate


def _observer(pipe: Flux2KleinPipeline, spec: ObserverSpec) -> InputAmaxObserver:
    model: nn.Module = getattr(pipe, spec.component)
    return InputAmaxObserver(model, spec.module_names, channels=spec.channels, histogram_bins=spec.histogram_bins)
