"""Speed and memory benchmarks: BF16 vs INT8 (vs FP8), eager vs compiled, with no download.

`run_benchmark` times a transformer (and a whole pipeline) per format, INT8 backend,
q/k/v fusion and compile mode; `random_transformer` builds full-size klein models with random weights on the
device; `run_microbench` times one `Int8Linear` against BF16 per klein linear shape;
`run_check` compares every INT8 backend with the reference on those shapes; a `Budget`
skips work that will not fit in a time allowance; `report` turns results into JSON and
Markdown, and `record` renders a GPU run's JSON into docs/benchmarks.md.

May import: errors, variants, formats, int8, loading, generate, quantization, tiny.
"""

from .budget import Budget
from .check import CHECK_BACKENDS, CHECK_TOKENS, CheckResult, run_check
from .microbench import DEVICE_PEAKS, DevicePeak, LinearShape, MicrobenchResult, device_peak, klein_linear_shapes, run_microbench, run_variant_microbench
from .pipeline_bench import INT8_BACKENDS, TINY, BenchResult, BenchSettings, RunPlan, RunResult, configure_transformer, run_benchmark
from .random_weights import FORMATS, empty_transformer, planned_bytes, random_text_encoder, random_transformer, random_vae
from .report import build_document, environment, format_markdown, write_report
from .timing import Stats, time_calls

__all__ = [
    "CHECK_BACKENDS",
    "CHECK_TOKENS",
    "DEVICE_PEAKS",
    "FORMATS",
    "INT8_BACKENDS",
    "TINY",
    "BenchResult",
    "BenchSettings",
    "Budget",
    "CheckResult",
    "DevicePeak",
    "LinearShape",
    "MicrobenchResult",
    "RunPlan",
    "RunResult",
    "Stats",
    "build_document",
    "configure_transformer",
    "device_peak",
    "empty_transformer",
    "environment",
    "format_markdown",
    "klein_linear_shapes",
    "planned_bytes",
    "random_text_encoder",
    "random_transformer",
    "random_vae",
    "run_benchmark",
    "run_check",
    "run_microbench",
    "run_variant_microbench",
    "time_calls",
    "write_report",
]
