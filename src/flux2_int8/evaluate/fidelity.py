"""Transformer fidelity: the candidate's predicted velocity vs the reference's, step by step, on the same latents.

Image metrics mix the transformer's error with how the sampler amplifies it over the
steps. This isolates the transformer: while the reference pipeline generates a case,
every call into its transformer (inputs and output) is recorded; each candidate
transformer is then run on exactly those inputs, and the relative L2 error of its
output against the reference output is reported per denoising step. No metric weights
are needed.

Recorded calls are stored per case as one safetensors file; a tensor that repeats
across calls (the prompt embedding, the position ids) is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import Flux2Int8Error
from ..formats.write import write_safetensors_atomic
from .metrics import relative_error

# The tensor keyword arguments Flux2KleinPipeline passes to its transformer (guidance is None in klein).
CALL_INPUTS = ("hidden_states", "encoder_hidden_states", "timestep", "img_ids", "txt_ids")
_OUTPUT = "output"


class TrajectoryRecorder:
    """Records every forward call of a transformer: its tensor inputs and its output, on the CPU."""

    def __init__(self) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        call = {name: kwargs[name].detach().cpu() for name in CALL_INPUTS if isinstance(kwargs.get(name), torch.Tensor)}
        first = output[0] if isinstance(output, tuple) else output.sample  # return_dict=False gives a tuple
        call[_OUTPUT] = first.detach().cpu()
        self.calls.append(call)

    @contextmanager
    def attached(self, transformer: nn.Module) -> Iterator[TrajectoryRecorder]:
        handle = transformer.register_forward_hook(self._hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()


def save_trajectory(path: Path, calls: list[dict[str, torch.Tensor]]) -> Path:
    """Write recorded calls to one safetensors file, each repeated tensor stored once.

    Metadata `calls` maps, per call, an argument name to its tensor key.
    """
    tensors: dict[str, torch.Tensor] = {}
    previous: dict[str, str] = {}
    index = []
    for number, call in enumerate(calls):
        keys = {}
        for name, tensor in call.items():
            last = previous.get(name)
            if last is not None and tensors[last].shape == tensor.shape and tensors[last].dtype == tensor.dtype and torch.equal(tensors[last], tensor):
                keys[name] = last
            else:
                keys[name] = previous[name] = f"{number}.{name}"
                tensors[keys[name]] = tensor
        index.append(keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors_atomic(path, tensors, {"calls": json.dumps(index)})


def load_trajectory(path: Path) -> list[dict[str, torch.Tensor]]:
    """The recorded calls of `save_trajectory`, in order."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            index = json.loads((handle.metadata() or {})["calls"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (OSError, KeyError, ValueError, SafetensorError) as error:
        raise Flux2Int8Error(f"{path}: not a readable trajectory file ({error}); delete it and the evaluation records it again") from None
    return [{name: tensors[key] for name, key in call.items()} for call in index]


def image_tokens(img_ids: torch.Tensor) -> int:
    """How many leading tokens are the generated image: reference-image tokens carry a nonzero time coordinate.

    img_ids: int [B, S, 4] (T, H, W, L). The pipeline puts the generated latents first and
    drops the transformer's outputs for the reference tokens, so only these are compared.
    """
    return int((img_ids[0, :, 0] == 0).sum())


@torch.no_grad()
def replay(transformer: nn.Module, calls: list[dict[str, torch.Tensor]]) -> list[float]:
    """Per denoising step, the relative L2 error of `transformer`'s velocity vs the recorded one.

    Calls with the same timestep form one step (a base model's conditional and
    unconditional calls); their errors are averaged.
    """
    parameter = next(transformer.parameters())
    device = parameter.device
    steps: dict[float, list[float]] = {}
    for call in calls:
        inputs = {name: call[name].to(device) for name in CALL_INPUTS if name in call}
        output = transformer(**inputs, guidance=None, return_dict=False)[0]
        tokens = image_tokens(call["img_ids"])
        error = relative_error(output[:, :tokens].float().cpu(), call[_OUTPUT][:, :tokens].float())
        steps.setdefault(float(call["timestep"].flatten()[0]), []).append(error)
    return [sum(errors) / len(errors) for errors in steps.values()]
