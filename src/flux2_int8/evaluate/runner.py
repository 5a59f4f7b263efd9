"""Generating an evaluation: the reference first (its inputs, images and trajectories), then each candidate.

A model is loaded only if something of it is missing, so a rerun over a complete folder
loads nothing. Each image is seeded by its case alone, so the pixels do not depend on
which shard or run made them; `--shard i/n` takes every n-th case, and `merge_folders`
gathers shards that wrote to separate folders.
"""

from __future__ import annotations

import filecmp
import gc
import json
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from diffusers import Flux2KleinPipeline
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..generate import apply_loras, generate_image, load_reference, png_metadata, sampling_defaults, write_png
from ..outputs import temporary_beside, write_text_atomic
from .fidelity import TrajectoryRecorder, load_trajectory, replay, save_trajectory
from .layout import check_checkpoint
from .layout import DIGEST_KEY, RUN_FILE, Layout, ModelSpec, RunSettings, is_current, read_runs, read_settings, reconcile, write_settings
from .suite import Case

# (base, transformer or None, device, dtype) -> a loaded pipeline; `flux2_int8.load_pipeline` by default.
PipelineLoader = Callable[[str, "str | None", "str | None", torch.dtype], Flux2KleinPipeline]
_MERGED = ("inputs", "images", "trajectories", "fidelity")


def default_loader(local_files_only: bool = False, activations: str = "auto", compile: str = "off") -> PipelineLoader:
    def load(base: str, transformer: str | None, device: str | None, dtype: torch.dtype) -> Flux2KleinPipeline:
        from ..generate import load_pipeline

        return load_pipeline(base, transformer=transformer, device=device, dtype=dtype, local_files_only=local_files_only, activations=activations, compile=compile)  # type: ignore[arg-type]

    return load


@dataclass(frozen=True)
class Work:
    """The cases one model still has to make, and how (reference: inputs and trajectories too)."""

    model: ModelSpec
    cases: list[Case]
    make: Callable[[Flux2KleinPipeline, ModelSpec, Case], None]


class Generator:
    """Makes whatever a folder lacks for the given cases, model by model."""

    def __init__(self, layout: Layout, settings: RunSettings, loader: PipelineLoader, device: str | None = None, fidelity: bool = True, progress: bool = True):
        self.layout = layout
        self.settings = settings
        self.loader = loader
        self.device = device
        self.fidelity = fidelity
        self.progress = progress

    def plan(self, cases: Sequence[Case], reference: ModelSpec, candidates: Sequence[ModelSpec]) -> list[Work]:
        """What each model lacks, reference first; every checkpoint with work to do is checked now."""
        work = [Work(reference, [c for c in cases if self._reference_missing(c)], self._reference_case)]
        work += [Work(model, [c for c in cases if self._candidate_missing(model, c)], self._candidate_case) for model in candidates]
        for item in work:
            if item.cases:
                check_checkpoint(item.model)
        return work

    def run(self, work: Sequence[Work]) -> RunSettings:
        """Make the planned cases, one model loaded at a time; returns the settings with steps and guidance resolved.

        Each pipeline is released before the next loads, so a GPU holds one model at a time.
        """
        for item in work:
            if not item.cases:
                continue
            pipeline = self.load(item.model)
            try:
                for case in tqdm(item.cases, desc=item.model.name, disable=not self.progress):
                    item.make(pipeline, item.model, case)
            finally:
                del pipeline
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        return self.settings

    def load(self, model: ModelSpec) -> Flux2KleinPipeline:
        """Load a model's pipeline; the first load fixes the default steps and guidance in run.json."""
        pipeline = self.loader(self.settings.base, model.transformer, self.device, getattr(torch, self.settings.dtype))
        if self.settings.loras:
            apply_loras(pipeline, self.settings.loras)
        pipeline.set_progress_bar_config(disable=True)
        defaults = sampling_defaults(pipeline)
        steps = self.settings.steps or defaults.steps
        guidance = defaults.guidance if self.settings.guidance is None else self.settings.guidance
        if (steps, guidance) != (self.settings.steps, self.settings.guidance):
            self.settings = replace(self.settings, steps=steps, guidance=guidance)
            write_settings(self.layout.run_file, self.settings)
        return pipeline

    def _reference_missing(self, case: Case) -> bool:
        inputs = all(is_current(self.layout.input(case, k), case) for k in range(len(case.input_prompts)))
        trajectory = not self.fidelity or self.layout.trajectory(case).is_file()
        return not (inputs and trajectory and is_current(self.layout.image(self.settings.reference, case), case))

    def _candidate_missing(self, candidate: ModelSpec, case: Case) -> bool:
        fidelity = not self.fidelity or self.layout.fidelity(candidate.name, case).is_file()
        return not (fidelity and is_current(self.layout.image(candidate.name, case), case))

    def _reference_case(self, pipeline: Flux2KleinPipeline, model: ModelSpec, case: Case) -> None:
        for k, prompt in enumerate(case.input_prompts):
            path = self.layout.input(case, k)
            if not is_current(path, case):
                image = self._generate(pipeline, prompt, [], case.input_seed(k))
                write_png(path, image, self._metadata(model, case, prompt, case.input_seed(k), references=()))
        recorder = TrajectoryRecorder()
        with recorder.attached(pipeline.transformer) if self.fidelity else nullcontext():
            image = self._generate(pipeline, case.prompt, self._inputs(case), case.seed)
        write_png(self.layout.image(model.name, case), image, self._metadata(model, case, case.prompt, case.seed, tuple(self.layout.inputs(case))))
        if self.fidelity:
            save_trajectory(self.layout.trajectory(case), recorder.calls)

    def _candidate_case(self, pipeline: Flux2KleinPipeline, model: ModelSpec, case: Case) -> None:
        path = self.layout.image(model.name, case)
        if not is_current(path, case):
            image = self._generate(pipeline, case.prompt, self._inputs(case), case.seed)
            write_png(path, image, self._metadata(model, case, case.prompt, case.seed, tuple(self.layout.inputs(case))))
        if self.fidelity:
            errors = replay(pipeline.transformer, load_trajectory(self.layout.trajectory(case)))
            _write_json(self.layout.fidelity(model.name, case), {"case": case.id, "seed": case.seed, "velocity_relative_error": errors})

    def _inputs(self, case: Case) -> list:
        return [load_reference(path) for path in self.layout.inputs(case)]

    def _generate(self, pipeline: Flux2KleinPipeline, prompt: str, inputs: list, seed: int):
        s = self.settings
        return generate_image(pipeline, prompt, inputs, seed, s.steps, s.guidance, s.width, s.height)  # pads prompts as the model was trained

    def _metadata(self, model: ModelSpec, case: Case, prompt: str, seed: int, references: tuple[Path, ...]) -> dict[str, str]:
        """generate's PNG text chunks, plus the case, its digest (for staleness) and the model name."""
        s = self.settings
        metadata = png_metadata(prompt, seed, s.steps, s.guidance, (s.width, s.height), s.base, model.transformer, references)
        metadata[DIGEST_KEY] = case.digest
        metadata["case"] = case.id
        metadata["model"] = model.name
        return metadata


@dataclass(frozen=True)
class Merged:
    """The settings after a merge, and how many files were copied, already present, or present with other bytes."""

    settings: RunSettings
    copied: int = 0
    present: int = 0
    conflicts: int = 0


def merge_folders(layout: Layout, sources: Sequence[str | Path], settings: RunSettings) -> Merged:
    """Copy into `layout` every keyed file of `sources` it lacks (idempotent), and record the merged run.json.

    Each source's run.json must agree with `settings` (same base, size, dtype, steps,
    reference; a model name means one checkpoint). A file present on both sides is
    kept as it is here (a conflict if the bytes differ: nondeterministic hardware).
    The sources' recorded runs are added to this folder's.
    """
    counts = {"copied": 0, "present": 0, "conflicts": 0}
    runs = read_runs(layout.run_file)
    for source in sources:
        root = Path(source).expanduser()
        recorded = read_settings(root / RUN_FILE)
        if recorded is None:
            raise ConfigError(f"--merge {root}: no {RUN_FILE} there; expected an evaluation folder (a shard's --out)")
        settings = reconcile(settings, recorded, root)
        runs += [run for run in read_runs(root / RUN_FILE) if run not in runs]
        for folder in _MERGED:
            for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
                if path.is_file() and not path.name.startswith("."):
                    counts[_copy_missing(path, layout.root / path.relative_to(root))] += 1
    write_settings(layout.run_file, settings, runs)
    return Merged(settings, **counts)


def _copy_missing(source: Path, target: Path) -> str:
    if target.exists():
        return "present" if filecmp.cmp(source, target, shallow=False) else "conflicts"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(target)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return "copied"


def _write_json(path: Path, document: dict) -> None:
    write_text_atomic(path, json.dumps(document) + "\n")
