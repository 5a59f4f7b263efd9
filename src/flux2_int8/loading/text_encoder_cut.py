"""The cut text encoder as a model: transformers' headless `Qwen3Model` with only the layers the pipeline reads.

Which tensors survive is `planning.text_encoder`'s rule (one place, header-only); this
builds the model that holds them. The pipeline calls its text encoder with
`output_hidden_states=True` and reads `hidden_states[k]`, which a `Qwen3Model` answers
exactly as the full `Qwen3ForCausalLM` does, without the LM head. transformers returns the
*final-normed* output as the last hidden state, so a model cut at layer 27 has an
identity for a norm: layer 27's output reaches the pipeline un-normed, as in the full model.
"""

from __future__ import annotations

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from ..planning.text_encoder import CUT_FROM_LAYERS, TextEncoderCut
from ..planning.text_encoder import cut_for as _cut_for


def cut_for(config: PretrainedConfig, layers: tuple[int, ...] | None = None) -> TextEncoderCut:
    """The cut serving the pipeline's `layers` (default: its own) for an encoder of this config."""
    return _cut_for(int(config.num_hidden_layers), getattr(config, CUT_FROM_LAYERS, None), layers)


def cut_config(config: PretrainedConfig, cut: TextEncoderCut) -> PretrainedConfig:
    """A copy of `config` with `cut.depth` layers, recording the full depth."""
    document = config.to_dict()
    document["num_hidden_layers"] = cut.depth
    if isinstance(document.get("layer_types"), list):
        document["layer_types"] = document["layer_types"][: cut.depth]
    document[CUT_FROM_LAYERS] = cut.full_depth
    document.pop("architectures", None)
    return AutoConfig.for_model(document.pop("model_type"), **document)


def empty_cut_encoder(config: PretrainedConfig, cut: TextEncoderCut, dtype: torch.dtype) -> PreTrainedModel:
    """The headless encoder with parameters on meta (no memory), computed buffers real."""
    with init_empty_weights(include_buffers=False):
        model = AutoModel.from_config(cut_config(config, cut), dtype=dtype)
    if not cut.keeps_norm:
        model.norm = nn.Identity()
    return model


def full_encoder_bytes(config: PretrainedConfig, dtype: torch.dtype) -> int:
    """Bytes of the whole `Qwen3ForCausalLM` of `config` in `dtype` (a tied head once), built on meta."""
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()
    return module_bytes(model)


def module_bytes(model: nn.Module) -> int:
    """Bytes of a module's stored tensors (its state dict: parameters and persistent buffers), a tied tensor once.

    What the memory plan predicts from the headers; computed buffers (rotary
    frequencies, a few hundred bytes) are not stored and not counted.
    """
    seen: set[int] = set()
    total = 0
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total
