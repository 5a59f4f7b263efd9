"""The built-in models' own defaults on the pipeline itself, so the API samples as the CLI does.

diffusers' `Flux2KleinPipeline.__call__` defaults to 1024 px, 512 text tokens and 50 steps,
and runs on all of PyTorch's threads. For nano (trained at 128 px, 32 tokens, 4 steps) that
draws noise, slowly; and a model as small as nano or tiny is far too small to split over
threads (see `flux2_int8.threads`). So `load_pipeline` gives such a pipeline:

- its native size through diffusers' own knob, `default_sample_size` (a reference image's
  size still wins for edits, as diffusers decides);
- a `__call__` that fills in the model's `max_sequence_length` and steps where the caller
  gave none, and runs under the fitted thread count, restoring the caller's count after.

The class stays a `Flux2KleinPipeline` (a subclass carrying that class name, so
`save_pretrained` writes a `model_index.json` diffusers loads back).
"""

from __future__ import annotations

import inspect
from typing import Any

from diffusers import Flux2KleinPipeline

from ..nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, NANO_STEPS, is_nano
from ..threads import fitted_thread_count, fitted_threads, hidden_size

_CALL_SIGNATURE = inspect.signature(Flux2KleinPipeline.__call__)


class _BuiltInDefaultsPipeline(Flux2KleinPipeline):
    """`Flux2KleinPipeline` whose call defaults are the loaded model's own (set by `apply_builtin_defaults`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        given = _CALL_SIGNATURE.bind_partial(self, *args, **kwargs).arguments
        for name, value in getattr(self, "_flux2_int8_call_defaults", {}).items():
            if name not in given:
                kwargs[name] = value
        hidden = hidden_size(dict(self.transformer.config))
        with fitted_threads(hidden, getattr(self, "_flux2_int8_threads", None)):
            return super().__call__(*args, **kwargs)


# The name diffusers writes as `_class_name` and resolves on load: keep diffusers' own.
_BuiltInDefaultsPipeline.__name__ = _BuiltInDefaultsPipeline.__qualname__ = Flux2KleinPipeline.__name__


def native_size(transformer_config: dict[str, Any]) -> int | None:
    """The square size in pixels a model was trained at, where it is not klein's 1024 (nano: 128)."""
    return NANO_SIZE if is_nano(transformer_config) else None


def builtin_call_defaults(transformer_config: dict[str, Any]) -> dict[str, Any]:
    """`__call__` keyword defaults that differ from diffusers' for this model (nano: 32 tokens, 4 steps)."""
    if is_nano(transformer_config):
        return {"max_sequence_length": NANO_MAX_SEQUENCE_LENGTH, "num_inference_steps": NANO_STEPS}
    return {}


def apply_builtin_defaults(pipeline: Flux2KleinPipeline, threads: int | None = None) -> Flux2KleinPipeline:
    """Give `pipeline` the loaded model's native defaults and fitted threads (in place; returned).

    Only pipelines that have something to change are touched: a built-in model (nano: size,
    sequence length, steps), a model small enough for one thread, or an explicit `threads`.
    A full-size klein pipeline without `threads` stays diffusers' class, untouched.
    """
    config = dict(pipeline.transformer.config)
    call_defaults = builtin_call_defaults(config)
    count = fitted_thread_count(hidden_size(config), threads)
    if not call_defaults and count is None and threads is None:
        return pipeline
    size = native_size(config)
    if size is not None:
        pipeline.default_sample_size = size // pipeline.vae_scale_factor
    pipeline._flux2_int8_call_defaults = call_defaults
    pipeline._flux2_int8_threads = threads
    pipeline.__class__ = _BuiltInDefaultsPipeline
    return pipeline
