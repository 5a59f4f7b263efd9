"""Silence diffusers' per-call warnings a user cannot act on.

`Flux2KleinPipeline.__call__` defaults to `guidance_scale=4.0` and then warns, on every
call of a distilled model, that the guidance it chose itself is ignored. The warning
says nothing about the user's input, so pipelines from `load_pipeline` drop it; every
other diffusers message passes.
"""

from __future__ import annotations

import logging

_KLEIN_LOGGER = "diffusers.pipelines.flux2.pipeline_flux2_klein"
_IGNORED_GUIDANCE = "is ignored for step-wise distilled models"


class _DropMessage(logging.Filter):
    """Drops the records whose message contains `fragment`; every other record passes."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _drop_on(logger_name: str, fragment: str) -> None:
    """Install a `_DropMessage(fragment)` on the logger, once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, _DropMessage) and existing.fragment == fragment for existing in logger.filters):
        logger.addFilter(_DropMessage(fragment))


def silence_ignored_guidance_warning() -> None:
    """Install the filter on the klein pipeline's logger (once)."""
    _drop_on(_KLEIN_LOGGER, _IGNORED_GUIDANCE)


_PIPELINE_LOGGER = "diffusers.pipelines.pipeline_utils"
# The cut text encoder is transformers' headless `Qwen3Model` where the pipeline's hint says
# `Qwen3ForCausalLM`. The pipeline only reads hidden states, which both answer alike; the
# warning would appear on every load.
_CUT_ENCODER_TYPE = "Expected types for text_encoder: (<class 'transformers.models.qwen3.modeling_qwen3.Qwen3ForCausalLM'>,), got <class 'transformers.models.qwen3.modeling_qwen3.Qwen3Model'>"


def silence_cut_encoder_type_warning() -> None:
    """Install the filter on diffusers' pipeline logger (once)."""
    _drop_on(_PIPELINE_LOGGER, _CUT_ENCODER_TYPE)
