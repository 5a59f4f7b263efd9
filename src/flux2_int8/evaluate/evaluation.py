"""`evaluate`: generate a suite with a reference and candidate transformers, score them, write the reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..generate import Sampling, check_run_inputs, check_sampling, load_reference
from ..lora.spec import lora_paths
from ..outputs import claim_folder, input_files, mark_folder
from ..provenance import provenance
from .layout import RUN_FILE, Layout, ModelSpec, RunSettings, Shard, check_checkpoints, parse_model_spec, read_settings, reconcile, record_run
from .metrics import MetricModels, load_metric_models
from .pictures import add_difference_maps
from .report import write_reports
from .runner import Generator, Merged, PipelineLoader, Work, default_loader, merge_folders
from .score import score
from .suite import DEFAULT_SUITE, NANO_SUITE, Suite, load_suite
from .weights import METRICS, WEIGHTLESS
from .weights import DEFAULT_CLIP_MODEL, DEFAULT_LPIPS_NET, ResolvedWeights, WeightsLocation, resolve_available, resolve_weights

@dataclass(frozen=True)
class MetricOptions:
    """Which metrics, and where their networks come from (resolved from `weights`, unless `networks` is given)."""

    metrics: frozenset[str] = frozenset(METRICS)
    weights: WeightsLocation = field(default_factory=WeightsLocation)
    clip_model: str = DEFAULT_CLIP_MODEL
    lpips_net: str = DEFAULT_LPIPS_NET
    networks: MetricModels | None = None  # injected networks (tests, notebooks), used as given
    required: bool = True  # False (a default set): a metric whose weights cannot be had is skipped, not an error


@dataclass(frozen=True)
class EvalResult:
    """Where the run wrote, its metrics document (None for a shard, which only generates), report paths, merge counts."""

    out: Path
    settings: RunSettings
    document: dict[str, Any] | None
    reports: dict[str, Path]
    merged: Merged | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why (weights not available), with required=False


def evaluate(
    base: str,
    candidates: Sequence[ModelSpec | str],
    out: str | Path,
    reference: ModelSpec | str = "bf16",
    suite: Suite | str | Path = DEFAULT_SUITE,
    options: MetricOptions = MetricOptions(),
    sampling: RunSettings | None = None,
    device: str | None = None,
    shard: Shard = Shard(),
    merge: Sequence[str | Path] = (),
    loader: PipelineLoader | None = None,
    progress: bool = True,
    fan_out: Callable[[Generator, Sequence[Work]], RunSettings] | None = None,
    command: str | None = None,
    overwrite: bool = False,
) -> EvalResult:
    """Generate every case of `suite` with the reference and each candidate, then score and report.

    `candidates` and `reference` are `ModelSpec`s or strings (`NAME=PATH`, `PATH`, `bf16`).
    `sampling` gives width, height, dtype, steps and guidance (`base` and the models are
    filled in). Images already in `out` for the same settings are reused. A shard
    (`Shard(i, n)` with n > 1) only generates its cases; a later run without a shard
    (after `merge`-ing the shard folders, or on a shared folder) scores. `fan_out`, if
    given, makes the planned images instead of this process (`flux2_int8.scale_out`
    spreads them over a Ray cluster); scoring stays here. run.json and the report
    record the date, device, versions and `command` (default: this process's command
    line) of every run that wrote the folder. `out` must be new, empty, an evaluation
    folder, or `overwrite` given; it never holds an input.
    """
    reference_spec = reference if isinstance(reference, ModelSpec) else parse_model_spec(reference)
    candidate_specs = [c if isinstance(c, ModelSpec) else parse_model_spec(c) for c in candidates]
    _check_names(reference_spec, candidate_specs)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    sampling = sampling or RunSettings(base)
    check_sampling(Sampling(sampling.steps, sampling.guidance, sampling.width, sampling.height))
    scoring = shard.count == 1
    check_checkpoints((reference_spec, *candidate_specs))  # every header, before metric weights are looked for
    resolved, skipped = _preflight(options) if scoring and options.networks is None else (ResolvedWeights(), {})
    options = replace(options, metrics=options.metrics - set(skipped))
    models = {m.name: m.transformer for m in (reference_spec, *candidate_specs)}
    wanted = RunSettings(**{**asdict(sampling), "base": str(base), "reference": reference_spec.name, "models": models})
    _check_inputs(base, (reference_spec, *candidate_specs), suite, sampling.loras)  # all of them, before anything is claimed
    inputs = input_files(
        *(m.transformer for m in (reference_spec, *candidate_specs)),
        *(p for c in suite.cases for p in c.input_images),
        base, None if suite.name in (DEFAULT_SUITE, NANO_SUITE) else suite.name, *lora_paths(sampling.loras), *merge, options.weights.root,
    )
    layout = Layout(claim_folder(out, inputs, overwrite, owned=lambda folder: (folder / RUN_FILE).is_file()))
    settings = reconcile(read_settings(layout.run_file), wanted, layout.root)
    mark_folder(layout.root)
    merged = merge_folders(layout, merge, settings) if merge else None
    settings = merged.settings if merged else settings
    generator = Generator(layout, settings, loader or default_loader(), device, fidelity="fidelity" in options.metrics, progress=progress)
    work = generator.plan(shard.select(suite.cases), reference_spec, candidate_specs)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = record_run(layout.run_file, settings, provenance(device, command))
    settings = fan_out(generator, work) if fan_out else generator.run(work)
    if not scoring:
        return EvalResult(layout.root, settings, None, {}, merged, skipped)
    networks = options.networks or load_metric_models(set(options.metrics), resolved, device)
    document = score(layout, suite, reference_spec.name, [c.name for c in candidate_specs], set(options.metrics), networks)
    document["settings"] = asdict(settings)
    document["runs"] = runs
    add_difference_maps(document, layout.root)
    return EvalResult(layout.root, settings, document, write_reports(document, layout.root), merged, skipped)


def _check_inputs(base: str, models: Sequence[ModelSpec], suite: Suite, loras: Sequence[str]) -> None:
    """Every checkpoint header, its fit to the base, every LoRA (found, a LoRA, fitting) and every input image."""
    check_checkpoints(models)
    check_run_inputs(base, [m.transformer for m in models if m.transformer is not None], loras)
    for path in sorted({p for case in suite.cases for p in case.input_images}):
        load_reference(path).close()


def _check_names(reference: ModelSpec, candidates: Sequence[ModelSpec]) -> None:
    if not candidates:
        raise ConfigError("give at least one --candidate NAME=PATH to compare with the reference")
    names = [reference.name, *(c.name for c in candidates)]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"two models are named '{duplicate}' (the reference is '{reference.name}'): give each candidate its own NAME=PATH")


def _preflight(options: MetricOptions) -> tuple[ResolvedWeights, dict[str, str]]:
    """Fetch or find every metric weight before generating: a missing file fails now, not after an hour.

    With `required=False` the metrics whose weights cannot be had are returned as skipped instead.
    """
    needs = set(options.metrics) - WEIGHTLESS
    if not needs:
        return ResolvedWeights(), {}
    if not options.required:
        return resolve_available(needs, options.weights, options.clip_model, options.lpips_net)
    return resolve_weights(needs, options.weights, options.clip_model, options.lpips_net), {}
