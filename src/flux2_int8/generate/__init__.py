"""Generating images with INT8 FLUX.2 [klein]: load a pipeline, check requests, write PNGs.

May import: errors, variants, formats, int8, loading.

Names load on first use (PEP 562), so a command checks its requests (`requests`,
`output`) before torch and diffusers are imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

_LAZY_EXPORTS = {
    "generate_images": ".batch",
    "COMPILE_MODES": ".compilation",
    "compile_transformer": ".compilation",
    "resolve_compile_mode": ".compilation",
    "check_writable": ".output",
    "png_metadata": ".output",
    "write_png": ".output",
    "writing_images": ".output",
    "OFFLOAD_MODES": ".pipeline",
    "SamplingDefaults": ".pipeline",
    "apply_loras": ".pipeline",
    "check_checkpoint_fits": ".pipeline",
    "check_run_inputs": ".pipeline",
    "load_pipeline": ".pipeline",
    "sampling_defaults": ".pipeline",
    "MAX_REFERENCE_IMAGES": ".requests",
    "Request": ".requests",
    "RequestError": ".requests",
    "Sampling": ".requests",
    "check_request": ".requests",
    "check_sampling": ".requests",
    "load_reference": ".requests",
    "read_prompts_file": ".requests",
    "Generated": ".run",
    "Job": ".jobs",
    "generate_image": ".run",
    "plan_jobs": ".jobs",
    "resolve_sampling": ".run",
    "run_job": ".run",
    "run_jobs": ".run",
}

if TYPE_CHECKING:
    from .batch import generate_images
    from .compilation import COMPILE_MODES, compile_transformer, resolve_compile_mode
    from .output import check_writable, png_metadata, write_png, writing_images
    from .pipeline import OFFLOAD_MODES, SamplingDefaults, apply_loras, check_checkpoint_fits, check_run_inputs, load_pipeline, sampling_defaults
    from .requests import MAX_REFERENCE_IMAGES, Request, RequestError, Sampling, check_request, check_sampling, load_reference, read_prompts_file
    from .jobs import Job, plan_jobs
    from .run import Generated, generate_image, resolve_sampling, run_job, run_jobs

__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


__all__ = [
    "COMPILE_MODES",
    "MAX_REFERENCE_IMAGES",
    "OFFLOAD_MODES",
    "Generated",
    "Job",
    "Request",
    "RequestError",
    "Sampling",
    "SamplingDefaults",
    "apply_loras",
    "check_checkpoint_fits",
    "check_request",
    "check_run_inputs",
    "check_sampling",
    "check_writable",
    "compile_transformer",
    "generate_image",
    "generate_images",
    "load_pipeline",
    "load_reference",
    "plan_jobs",
    "png_metadata",
    "read_prompts_file",
    "resolve_compile_mode",
    "resolve_sampling",
    "run_job",
    "run_jobs",
    "sampling_defaults",
    "write_png",
    "writing_images",
]
