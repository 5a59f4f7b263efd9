"""The text encoder the pipeline reads, counted from headers: which tensors survive the cut, and their bytes.

`Flux2KleinPipeline` stacks the hidden states after layers (9, 18, 27) of Qwen3
(`text_encoder_out_layers`). Layers past the deepest one, the final norm and the LM
head are never used, so the loaders (`loading.text_encoder`) keep only what this rule
keeps and the plan counts only that. The rule is plain Python so that planning stays
header-only (no torch).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

CUT_FROM_LAYERS = "flux2_int8_cut_from_layers"  # config entry: the depth of the model an encoder was cut from
_CAUSAL_PREFIX = "model."  # Qwen3ForCausalLM's names for the headless model's tensors
_HEAD_PREFIX = "lm_head."
_PIPELINE_MODULE = "diffusers.pipelines.flux2.pipeline_flux2_klein"
_LAYERS_ARGUMENT = "text_encoder_out_layers"


def pipeline_hidden_state_layers() -> tuple[int, ...]:
    """The hidden states `Flux2KleinPipeline.__call__` reads by default (`text_encoder_out_layers`).

    Read from the installed diffusers' source with `ast` rather than by importing it, so
    a header-only plan answers without loading torch; a source it cannot read falls
    back to importing the pipeline and reading its signature.
    """
    spec = importlib.util.find_spec("diffusers")  # a top-level spec: finding it imports nothing
    if spec is not None and spec.submodule_search_locations:
        source = Path(list(spec.submodule_search_locations)[0]).joinpath(*_PIPELINE_MODULE.split(".")[1:]).with_suffix(".py")
        found = _default_from_source(source)
        if found is not None:
            return found
    import inspect

    from diffusers import Flux2KleinPipeline

    return tuple(int(k) for k in inspect.signature(Flux2KleinPipeline.__call__).parameters[_LAYERS_ARGUMENT].default)


def _default_from_source(path: Path) -> tuple[int, ...] | None:
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Flux2KleinPipeline":
            for function in node.body:
                if isinstance(function, ast.FunctionDef) and function.name == "__call__":
                    arguments = function.args.args[len(function.args.args) - len(function.args.defaults):] + function.args.kwonlyargs
                    defaults = list(function.args.defaults) + list(function.args.kw_defaults)
                    for argument, default in zip(arguments, defaults):
                        if argument.arg == _LAYERS_ARGUMENT and default is not None:
                            try:
                                return tuple(int(k) for k in ast.literal_eval(default))
                            except (ValueError, TypeError):
                                return None
    return None


@dataclass(frozen=True)
class TextEncoderCut:
    """How deep the encoder is kept: `depth` decoder layers of `full_depth`, the final norm only when nothing is cut."""

    depth: int
    full_depth: int

    @property
    def keeps_norm(self) -> bool:
        # hidden_states[full_depth] is the final-normed output: with no layer cut, the norm is read.
        return self.depth == self.full_depth

    @property
    def cuts_anything(self) -> bool:
        return self.depth < self.full_depth

    def model_key(self, stored_key: str) -> str | None:
        """A stored tensor name (`Qwen3ForCausalLM` or `Qwen3Model` naming) -> the cut model's, or None when cut off."""
        if stored_key.startswith(_HEAD_PREFIX):
            return None
        key = stored_key[len(_CAUSAL_PREFIX):] if stored_key.startswith(_CAUSAL_PREFIX) else stored_key
        if key.startswith("norm.") and not self.keeps_norm:
            return None
        if key.startswith("layers."):
            index = key.split(".", 2)[1]
            if index.isdigit() and int(index) >= self.depth:
                return None
        return key


def cut_for(num_hidden_layers: int, cut_from: int | None = None, layers: tuple[int, ...] | None = None) -> TextEncoderCut:
    """The cut serving the pipeline's `layers` (default: its own) for an encoder holding `num_hidden_layers`.

    `cut_from` is the depth of the model it was cut from (a cut file's config records it).
    """
    full = int(cut_from or num_hidden_layers)
    layers = pipeline_hidden_state_layers() if layers is None else tuple(layers)
    if not layers or any(k < 0 for k in layers):  # counted from the end: keep everything
        return TextEncoderCut(num_hidden_layers, full)
    deepest = max(layers)
    if deepest > num_hidden_layers:
        cut_note = f" (cut from {full})" if full != num_hidden_layers else ""
        raise ConfigError(f"the pipeline reads text-encoder hidden state {deepest}, but the text encoder has {num_hidden_layers} layers{cut_note}")
    return TextEncoderCut(deepest, full)


def is_linear_weight(model_key: str, shape: tuple[int, ...]) -> bool:
    """A decoder layer's projection weight (what INT8 quantizes): 2-D, inside `layers.` (norms are 1-D)."""
    return model_key.startswith("layers.") and model_key.endswith(".weight") and len(shape) == 2
