"""Generating images with INT8 FLUX.2 [klein]: load a pipeline, check requests, write PNGs.

May import: errors, variants, formats, int8, loading.
"""

from .batch import generate_images
from .compilation import COMPILE_MODES, compile_transformer, resolve_compile_mode
from .output import check_writable, png_metadata, write_png, writing_images
from .pipeline import OFFLOAD_MODES, SamplingDefaults, apply_loras, check_checkpoint_fits, check_run_inputs, load_pipeline, sampling_defaults
from .requests import MAX_REFERENCE_IMAGES, Request, RequestError, Sampling, check_request, check_sampling, load_reference, read_prompts_file
from .run import Generated, Job, generate_image, plan_jobs, resolve_sampling, run_job, run_jobs

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
