"""Evaluating INT8 (and FP8, BF16) transformers against a reference: images, metrics, reports.

`evaluate` generates a suite with the reference and each candidate, caches every image
by (case id, seed, model), and scores CLIP, LPIPS, PSNR, FID/KID and the transformer's
velocity error per step. Metric networks load lazily: without the `eval` extra, PSNR and
the velocity error still work. Names load on first use (PEP 562), so the CLI can
read defaults from `weights` without importing torch.

May import: errors, variants, formats, int8, loading, generate, quantization, tiny.
"""

from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY_EXPORTS = {
    "METRICS": ".weights",
    "EvalResult": ".evaluation",
    "MetricOptions": ".evaluation",
    "evaluate": ".evaluation",
    "parse_metrics": ".weights",
    "Layout": ".layout",
    "ModelSpec": ".layout",
    "RunSettings": ".layout",
    "parse_model_spec": ".layout",
    "ClipMetric": ".metrics",
    "InceptionFeatures": ".metrics",
    "LpipsMetric": ".metrics",
    "MetricModels": ".metrics",
    "clip_s": ".metrics",
    "image_tensor": ".metrics",
    "psnr": ".metrics",
    "set_scores": ".metrics",
    "Shard": ".layout",
    "merge_folders": ".runner",
    "parse_shard": ".layout",
    "TASKS": ".suite",
    "Case": ".suite",
    "Suite": ".suite",
    "SuiteError": ".suite",
    "convert_parti_prompts": ".suite",
    "load_suite": ".suite",
    "DEFAULT_CLIP_MODEL": ".weights",
    "DEFAULT_LPIPS_NET": ".weights",
    "MetricWeightsError": ".weights",
    "WeightsLocation": ".weights",
    "resolve_weights": ".weights",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)


__all__ = list(_LAZY_EXPORTS)
