"""Evaluating INT8 (and FP8, BF16) transformers against a reference: images, metrics, reports.

`evaluate` generates a suite with the reference and each candidate, caches every image
by (case id, seed, model), and scores CLIP, LPIPS, PSNR, FID/KID and the transformer's
velocity error per step. Metric networks load lazily: without the `eval` extra, PSNR and
the velocity error still work.
"""

from .evaluation import METRICS, EvalResult, MetricOptions, evaluate, parse_metrics
from .layout import Layout, ModelSpec, RunSettings, parse_model_spec
from .metrics import ClipMetric, InceptionFeatures, LpipsMetric, MetricModels, clip_s, image_tensor, psnr, set_scores
from .runner import Shard, merge_folders, parse_shard
from .suite import TASKS, Case, Suite, SuiteError, convert_parti_prompts, load_suite
from .weights import DEFAULT_CLIP_MODEL, DEFAULT_LPIPS_NET, MetricWeightsError, WeightsLocation, resolve_weights

__all__ = [
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_LPIPS_NET",
    "METRICS",
    "TASKS",
    "Case",
    "ClipMetric",
    "EvalResult",
    "InceptionFeatures",
    "Layout",
    "LpipsMetric",
    "MetricModels",
    "MetricOptions",
    "MetricWeightsError",
    "ModelSpec",
    "RunSettings",
    "Shard",
    "Suite",
    "SuiteError",
    "WeightsLocation",
    "clip_s",
    "convert_parti_prompts",
    "evaluate",
    "image_tensor",
    "load_suite",
    "merge_folders",
    "parse_metrics",
    "parse_model_spec",
    "parse_shard",
    "psnr",
    "resolve_weights",
    "set_scores",
]
